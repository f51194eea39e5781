// Package verdict turns one cell's collected evidence into its verdict: a pure function
// with no I/O, so every rule below is tested by tables (verdict_test.go) and mutation.
// docs/verdicts.md explains the rules to users.
//
// The rules, in order:
//  1. The lab could not cut the cell's kernel-log window, set the cell up, collect it,
//     or lost the machine: INFRA, unless a crash on the console explains it.
//  2. A crash attributable to the job's modules (a frame in one of them, or a fault at a
//     page the trace shows being handed across threads): CRASHED, which meets
//     "reproduces" and "crashes".
//  3. A divergence (trace or data check): REPRODUCED.
//  4. Any other crash: CRASHED "not attributed to the module under test"; it meets
//     nothing.
//  5. A hang (a step that never finished, a hung task, an RCU stall, a lockup): HUNG.
//     5b. A failing KTAP test case (a kunit or kselftest step): TEST-FAILED, naming
//     the case; a truncated or malformed KTAP stream: INCONCLUSIVE, with the line.
//  6. A failed stress step: INFRA or, where the job makes failures evidence,
//     INCONCLUSIVE when its report does not explain the failure.
//  7. Anything that makes "nothing diverged" unprovable: trace integrity errors,
//     unreadable trace lines, kernel-log records lost, I/O errors, or less evidence
//     than the job asks for: INCONCLUSIVE, with the reason. It meets nothing.
//  8. On a HIGHMEM machine whose canary did not show the bug class (negative, failed,
//     skipped or disabled): CANNOT-DETECT. A negative canary (measured: the machine
//     hides the bug) gives CANNOT-DETECT even where rule 7 found gaps, which are listed.
//  9. Otherwise clean.
package verdict

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Step failure kinds.
const (
	FailExit    = "exit"    // the command exited non-zero
	FailTimeout = "timeout" // it did not finish in time
	FailCrashed = "crashed" // the kernel crashed under it and the lab stopped it
	FailLost    = "lost"    // the connection to the machine was lost
	FailError   = "error"   // the lab could not run it (template, copy, …)
)

// Step is one step that did not succeed.
type Step struct {
	Phase  string `json:"phase"` // setup, stress, collect, teardown
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	Policy Policy `json:"policy,omitempty"` // stress steps: infra or evidence
}

// Stress is one stress step's report as the lab read it.
type Stress struct {
	Step   string               `json:"step"`
	Report *stressreport.Report `json:"report"`
}

// Canary states as the verdict sees them.
const (
	CanaryPositive  = "positive"
	CanaryNegative  = "negative"
	CanaryNoHighmem = "no-highmem"
	CanaryFailed    = "failed"
	CanarySkipped   = "skipped"  // no way to build or load it on this machine
	CanaryDisabled  = "disabled" // --no-canary
)

// Canary is the per-machine canary's outcome.
type Canary struct {
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// Evidence is everything collected for one cell (one repeat of it).
type Evidence struct {
	Trace   *trace.Result    // nil when the kernel log could not be read
	Stress  []Stress         // reports of the stress steps that wrote one
	Failed  []Step           // steps that did not succeed
	Crashes []console.Report // fatal reports and warnings, console and kernel log
	Window  *kmsg.Window     // nil: the window's start could not be read
	Lost    bool             // the connection to the machine was lost
	Highmem bool             // the machine has HIGHMEM (the bug class can exist)
	Canary  Canary
	Modules []string // the job's module names, for attribution
	Pins    []string // pin mismatches ("image was X when recorded, is Y now")
	Tests   []Tests  // KTAP steps' test cases (tests.go)
}

// Expect is what the job asks of the cell.
type Expect struct {
	Want Expectation
	Min  MinEvidence // what "nothing diverged" needs to count as clean
}

// Decision is the verdict with its reasons.
type Decision struct {
	Verdict Verdict  `json:"verdict"`
	Met     bool     `json:"met"`
	Reasons []string `json:"reasons"`
	// Crash is the report the verdict is about (the first attributed one, else the
	// first fatal one), nil when none.
	Crash *console.Report `json:"crash,omitempty"`
	// Attributed says the crash has a frame in the job's modules or faulted at a
	// handed-over page.
	Attributed  bool   `json:"attributed,omitempty"`
	Attribution string `json:"attribution,omitempty"`
}

// Decide gives the verdict for one cell's evidence.
func Decide(ev Evidence, ex Expect) Decision {
	d := decide(ev, ex)
	d.Met = Meets(d, ex.Want)
	for _, p := range ev.Pins {
		d.Met = false
		d.Reasons = append(d.Reasons, "pin mismatch: "+p)
	}
	return d
}

func decide(ev Evidence, ex Expect) Decision {
	var d Decision
	why := func(f string, a ...any) { d.Reasons = append(d.Reasons, fmt.Sprintf(f, a...)) }

	crash, attributed, how := pickCrash(ev)
	var hang *console.Report
	for i := range ev.Crashes {
		if ev.Crashes[i].Hang() {
			hang = &ev.Crashes[i]
			break
		}
	}
	tot := Sum(ev.Stress)
	diverged := 0
	if ev.Trace != nil {
		diverged = ev.Trace.Diverged()
	}

	// 1. The lab could not judge.
	var infra []string
	if ev.Window == nil {
		infra = append(infra, "the kernel log window's start could not be read")
	}
	if ev.Lost {
		infra = append(infra, "the connection to the machine was lost")
	}
	for _, s := range ev.Failed {
		if s.Phase != "stress" && s.Phase != "teardown" {
			infra = append(infra, fmt.Sprintf("%s step %q: %s", s.Phase, s.Name, s.Detail))
		}
	}
	// A divergence or a data mismatch the lab saw inside a window that started is
	// sure whatever failed afterwards (a kernel whose pages went to the wrong thread
	// may well lose its network next), so it is judged below, the failure noted.
	sure := ev.Window != nil && (diverged > 0 || tot.Mismatches > 0)
	if len(infra) > 0 && crash == nil && !sure {
		d.Verdict = Infra
		d.Reasons = infra
		return d
	}

	// 2-4. Crashes and divergences.
	if crash != nil {
		d.Crash = crash
	}
	switch {
	case crash != nil && attributed:
		d.Verdict, d.Attributed, d.Attribution = Crashed, true, how
		why("crash: %s (%s)", crash.Title, how)
		return d
	case diverged > 0 || tot.Mismatches > 0:
		d.Verdict = Reproduced
		if diverged > 0 {
			why("trace: %d of %d transactions diverged", diverged, ev.Trace.Transactions)
		}
		if tot.Mismatches > 0 {
			why("data: %d mismatches", tot.Mismatches)
		}
		if crash != nil {
			why("also: crash %s, not attributed to the module under test", crash.Title)
		} else if hang != nil {
			why("also: %s", hang.Title)
		}
		for _, f := range infra {
			why("also: %s", f)
		}
		return d
	case crash != nil:
		d.Verdict = Crashed
		why("crash: %s, not attributed to the module under test", crash.Title)
		d.Reasons = append(d.Reasons, infra...)
		return d
	}

	// 5. Hangs.
	for _, s := range ev.Failed {
		if s.Kind == FailTimeout && hang == nil {
			d.Verdict = Hung
			why("%s step %q did not finish: %s", s.Phase, s.Name, s.Detail)
			return d
		}
	}
	if hang != nil {
		d.Verdict = Hung
		d.Crash = hang
		why("%s", hang.Title)
		if hang.Blocked != "" {
			why("blocked task: %s", hang.Blocked)
		}
		return d
	}

	// 5b. KTAP test cases (tests.go).
	if t := decideTests(ev); t != nil {
		return *t
	}

	// 6. Failed stress steps.
	for _, s := range ev.Failed {
		if s.Phase != "stress" {
			continue
		}
		if s.Policy != PolicyEvidence {
			d.Verdict = Infra
			why("stress step %q failed: %s", s.Name, s.Detail)
			return d
		}
		d.Verdict = Inconclusive
		why("stress step %q failed (%s) and its report shows no mismatch to explain it", s.Name, s.Detail)
		return d
	}

	// 7. Nothing diverged: is that proven?
	var gaps []string
	if ev.Trace != nil {
		t := ev.Trace
		if t.IntegrityTotal > 0 {
			gaps = append(gaps, fmt.Sprintf("%d transactions failed the trace's integrity checks", t.IntegrityTotal))
		}
		if n := t.Unparsed + t.Merged + t.Long; n > 0 {
			gaps = append(gaps, fmt.Sprintf("%d trace lines could not be read (%d unparsed, %d merged, %d too long)", n, t.Unparsed, t.Merged, t.Long))
		}
	}
	for _, s := range ev.Failed {
		if s.Phase == "teardown" {
			gaps = append(gaps, fmt.Sprintf("teardown step %q failed: %s", s.Name, s.Detail))
		}
	}
	if ev.Window != nil && ev.Window.Lost > 0 {
		gaps = append(gaps, fmt.Sprintf("%d kernel log records were lost inside the window", ev.Window.Lost))
	}
	if tot.IOErrors > 0 {
		gaps = append(gaps, fmt.Sprintf("%d I/O errors: that data was never verified", tot.IOErrors))
	}
	checked := 0
	if ev.Trace != nil {
		checked = ev.Trace.Reads + ev.Trace.Writes
	}
	if checked < ex.Min.Transactions {
		gaps = append(gaps, fmt.Sprintf("only %d trace transactions checked (the job asks for %d)", checked, ex.Min.Transactions))
	}
	if io := tot.Reads + tot.Writes; io < ex.Min.IO {
		gaps = append(gaps, fmt.Sprintf("only %d verified reads and writes (the job asks for %d)", io, ex.Min.IO))
	}
	if tot.Ops < ex.Min.Ops {
		gaps = append(gaps, fmt.Sprintf("only %d checked operations (the job asks for %d)", tot.Ops, ex.Min.Ops))
	}
	if len(gaps) > 0 {
		d.Verdict = Inconclusive
		d.Reasons = gaps
		// A machine whose canary measured that it hides the bug class cannot give
		// clean with any amount of evidence: say that, with the gaps beside it.
		if ev.Highmem && ev.Canary.State == CanaryNegative {
			d.Verdict = CannotDetect
			d.Reasons = append(gaps, fmt.Sprintf("canary negative on this HIGHMEM machine: %s", ev.Canary.Detail))
		}
		return d
	}
	why("nothing diverged: %d trace transactions, %d verified reads and writes, %d checked operations", checked, tot.Reads+tot.Writes, tot.Ops)
	if len(ev.Tests) > 0 {
		why("test cases: %s", TestTotals(ev.Tests))
	}

	// 8. Could the machine have shown it?
	if ev.Highmem && ev.Canary.State != CanaryPositive {
		d.Verdict = CannotDetect
		switch ev.Canary.State {
		case CanaryDisabled:
			why("canary disabled (--no-canary): a clean result on this HIGHMEM machine is unproven")
		case "":
			why("canary: no result on this HIGHMEM machine")
		default:
			why("canary %s on this HIGHMEM machine: %s", ev.Canary.State, ev.Canary.Detail)
		}
		return d
	}
	d.Verdict = Clean
	return d
}

// pickCrash returns the crash the verdict is about: the first fatal non-hang report
// attributable to the job's modules, else the first fatal non-hang report.
func pickCrash(ev Evidence) (*console.Report, bool, string) {
	var first *console.Report
	for i := range ev.Crashes {
		r := &ev.Crashes[i]
		if r.Kind == console.KindWarning || r.Hang() {
			continue
		}
		if how := Attribute(r, ev.Modules, ev.Trace); how != "" {
			return r, true, how
		}
		if first == nil {
			first = r
		}
	}
	return first, false, ""
}

// Attribute says why a crash belongs to the job's modules ("" when it does not): a
// frame in one of them, or a faulting address inside a page the trace shows being
// handed to another thread.
func Attribute(r *console.Report, modules []string, tr *trace.Result) string {
	for _, f := range r.Frames {
		for _, m := range modules {
			if f.Module != "" && f.Module == m {
				return "frame " + f.String()
			}
		}
	}
	if r.FaultAddr != 0 && tr != nil {
		page := r.FaultAddr &^ 0xfff
		for _, p := range tr.HandedPages {
			if p == page {
				return fmt.Sprintf("fault at %x, a page the trace shows handed across threads", r.FaultAddr)
			}
		}
	}
	return ""
}

// Meets says whether a decision satisfies an expectation.
func Meets(d Decision, want Expectation) bool {
	switch want {
	case ExpectReproduces:
		return d.Verdict == Reproduced || (d.Verdict == Crashed && d.Attributed)
	case ExpectCrashes:
		return d.Verdict == Crashed && d.Attributed
	case ExpectClean:
		return d.Verdict == Clean
	case ExpectCannotDetect:
		return d.Verdict == CannotDetect
	case ExpectBuildFails:
		return d.Verdict == BuildFailed
	}
	return false
}

// Summary aggregates a cell's repeats.
type Summary struct {
	Verdict Verdict         `json:"verdict"` // the most frequent verdict (ties: the more severe)
	Met     bool            `json:"met"`
	Runs    int             `json:"runs"`
	MetRuns int             `json:"met_runs"`
	Counts  map[Verdict]int `json:"counts"`
	Rate    string          `json:"rate"` // "REPRODUCED 29/30"
}

// Aggregate combines the decisions of a cell's repeats. A cell meets its expectation
// when at least minRate of its repeats did (minRate 0 means every repeat must).
func Aggregate(ds []Decision, minRate float64) Summary {
	s := Summary{Runs: len(ds), Counts: map[Verdict]int{}}
	for _, d := range ds {
		s.Counts[d.Verdict]++
		if d.Met {
			s.MetRuns++
		}
	}
	var vs []Verdict
	for v := range s.Counts {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		if s.Counts[vs[i]] != s.Counts[vs[j]] {
			return s.Counts[vs[i]] > s.Counts[vs[j]]
		}
		return vs[i].Severity() > vs[j].Severity()
	})
	if len(vs) > 0 {
		s.Verdict = vs[0]
	}
	need := s.Runs
	if minRate > 0 && minRate < 1 {
		need = int(math.Ceil(minRate * float64(s.Runs)))
	}
	s.Met = s.Runs > 0 && s.MetRuns >= need
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("%s %d/%d", v, s.Counts[v], s.Runs))
	}
	s.Rate = strings.Join(parts, ", ")
	return s
}
