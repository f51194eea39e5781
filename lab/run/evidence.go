package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/console"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/lab/symbolize"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/lab/verdict"
	"github.com/kmodlab/kmodlab/stressreport"
)

// judge gathers the cell's evidence, asks lab/verdict, and fills the report's cell
// with the verdict and the numbers behind it.
func (cr *cellRun) judge(f *follower) verdict.Decision {
	p, rc := cr.p, cr.rc
	ev := verdict.Evidence{
		Stress:  cr.stress,
		Failed:  cr.failed,
		Lost:    cr.lost,
		Highmem: p.highmem,
		Canary:  p.canary,
		Window:  verdict.Window{Started: cr.windowStart},
	}
	for _, m := range p.o.Job.Build.Modules {
		ev.Modules = append(ev.Modules, m.Name)
	}
	ev.Pins = cr.pins()
	con := ""
	if cr.watch != nil {
		con = cr.watch.consoleText()
		if con != "" {
			os.WriteFile(filepath.Join(rc.LogDir, "console.log"), []byte(con), 0o644)
		}
	}
	var kernReports []console.Report
	if f != nil {
		tr, reps, win := f.stop()
		ev.Trace, kernReports = tr, reps
		ev.Window.Records, ev.Window.Lost = win.Records, win.Lost
		end := cr.windowEnd
		if end == 0 {
			end = win.Last()
		}
		rc.Window = &report.Window{Start: win.Start, End: end, Records: win.Records, Lost: win.Lost}
		for _, g := range win.Gaps {
			rc.Window.Gaps = append(rc.Window.Gaps, report.Gap{After: g.After, Missing: g.Missing})
		}
	}
	// The console (guests) sees a crash even when the machine died before the kernel
	// log could be streamed; the kernel log sees what the console's log level hides.
	// Both are read; a report seen in both is counted once.
	ev.Crashes = mergeReports(console.Find(con), kernReports)
	if cr.watch != nil && cr.watch.panicked() && !console.Fatal(ev.Crashes) {
		ev.Crashes = append(ev.Crashes, console.Report{Title: "kernel panic (the guest's pvpanic device said so)", Kind: console.KindPanic})
	}

	d := verdict.Decide(ev, verdict.Expect{Want: cr.c.Expect, MinTransactions: p.o.Job.Expect.Evidence().Transactions,
		MinIO: p.o.Job.Expect.Evidence().IO, MinOps: p.o.Job.Expect.Evidence().Ops})
	rc.Verdict, rc.Met, rc.Reasons, rc.Attributed, rc.Attribution = d.Verdict, d.Met, d.Reasons, d.Attributed, d.Attribution
	rc.Crash = d.Crash
	rc.CanaryState = p.canary.State
	if p.canary.State != "" {
		rc.Canary = p.canary.State
		if p.canary.Detail != "" {
			rc.Canary += " (" + p.canary.Detail + ")"
		}
	}
	if d.Verdict == verdict.Infra {
		var errs []string
		for _, s := range cr.failed {
			errs = append(errs, fmt.Sprintf("%s step %q: %s", s.Phase, s.Name, s.Detail))
		}
		if len(errs) == 0 {
			errs = d.Reasons
		}
		rc.Error = strings.Join(errs, "\n")
	}
	if d.Crash != nil {
		cr.symbolize(d.Crash)
	}
	if d.Verdict == verdict.Hung {
		cr.diagnose()
	}
	cr.summarize(ev, d)
	return d
}

// symbolize puts source lines on the crash's frames in the job's modules (from the
// built .ko's DWARF and where the module was loaded) and names the first in the title.
func (cr *cellRun) symbolize(r *console.Report) {
	j := cr.p.o.Job
	var mods []symbolize.Module
	for _, m := range j.Build.Modules {
		ko := cr.p.hostKOs[m.Name]
		if ko == "" {
			continue // built on the machine: no host copy to read
		}
		mods = append(mods, symbolize.Module{Name: m.Name, KO: ko, TextAddr: cr.textAddrs[m.Name], SrcDir: m.Dir, Root: j.RootDir()})
	}
	if len(mods) == 0 {
		return
	}
	frames, err := symbolize.Report(r.Text, mods)
	if err != nil {
		cr.rc.Evidence = append(cr.rc.Evidence, "symbolize: "+firstLine(err.Error()))
	}
	for _, f := range frames {
		if f.File == "" {
			continue
		}
		for i := range r.Frames {
			fr := &r.Frames[i]
			if fr.Func == f.Func && fr.Offset == f.Offset && fr.Module == f.Module {
				fr.Source = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
		}
		if cr.rc.CrashSource == nil {
			cr.rc.CrashSource = &report.Source{File: f.File, Line: f.Line, Frame: f.String()}
			r.Title += " at " + f.Func + " (" + fmt.Sprintf("%s:%d", f.File, f.Line) + ")"
		}
	}
	r.Text = symbolize.Annotate(r.Text, frames)
}

// diagnose asks a hung machine for its blocked tasks and stacks, where it can.
func (cr *cellRun) diagnose() {
	dg, ok := cr.r.(runner.Diagnoser)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := dg.Diagnose(ctx)
	if err != nil {
		cr.rc.Evidence = append(cr.rc.Evidence, "diagnosis failed: "+firstLine(err.Error()))
		return
	}
	file := filepath.Join(cr.rc.LogDir, "diagnose.log")
	if os.WriteFile(file, []byte(out), 0o644) == nil {
		cr.rc.Evidence = append(cr.rc.Evidence, "diagnosis (sysrq w, t): "+file)
	}
}

// pins compares the replay's --pin values with what this run has.
func (cr *cellRun) pins() []string {
	var out []string
	keys := make([]string, 0, len(cr.p.o.Pins))
	for k := range cr.p.o.Pins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want := cr.p.o.Pins[k]
		got := map[string]string{"image": cr.rc.ImageHash, "module": cr.rc.ModuleHash, "kernel": cr.rc.Kernel}[k]
		if want != "-" && got != want {
			out = append(out, fmt.Sprintf("%s was %s when recorded, is %s now", k, want, orDash(got)))
		}
	}
	return out
}

// mergeReports joins the console's and the kernel log's reports, dropping the kernel
// log's copy of a report the console already has (same title).
func mergeReports(con, kern []console.Report) []console.Report {
	seen := map[string]bool{}
	out := append([]console.Report(nil), con...)
	for _, r := range con {
		seen[r.Title] = true
	}
	for _, r := range kern {
		if !seen[r.Title] {
			out = append(out, r)
			seen[r.Title] = true
		}
	}
	return out
}

// summarize writes the evidence lines a person reads under the matrix, and the
// structured numbers behind them.
func (cr *cellRun) summarize(ev verdict.Evidence, d verdict.Decision) {
	rc := cr.rc
	evl := &rc.Evidence
	if tr := ev.Trace; tr != nil {
		rc.Trace = &report.TraceSummary{Transactions: tr.Transactions, Reads: tr.Reads, Writes: tr.Writes,
			Diverged: tr.Diverged(), Unparsed: tr.Unparsed, Merged: tr.Merged, Long: tr.Long,
			Integrity: tr.IntegrityTotal, UserFaults: tr.UserFaults, Unstable: tr.Unstable, Kinds: tr.Kinds}
		if len(tr.Divergences) > 0 {
			first := tr.Divergences[0]
			rc.Trace.First = &first
			rc.Trace.FirstTable = trace.Table(first.Events)
		}
		if len(tr.Problems) > 0 {
			pr := tr.Problems[0]
			rc.Trace.Problem = &pr
		}
		if cr.stressKernUS >= 0 {
			// Times are after stress started: a divergence in setup (or an unknown
			// time, -1) is not on the stress run's chart.
			for _, ts := range tr.DivergenceTS {
				if ts >= cr.stressKernUS {
					rc.Divergences = append(rc.Divergences, (ts-cr.stressKernUS)/1000)
				}
			}
			if len(rc.Divergences) > 0 {
				rc.FirstDivergenceMS = rc.Divergences[0]
			}
		}
		switch {
		case tr.Diverged() > 0:
			*evl = append(*evl, fmt.Sprintf("trace: %d of %d transactions diverged (%s)", tr.Diverged(), tr.Transactions, kinds(tr.Kinds)))
		case tr.Transactions > 0:
			*evl = append(*evl, fmt.Sprintf("trace: %d transactions (%d reads, %d writes checked), none diverged", tr.Transactions, tr.Reads, tr.Writes))
		}
		if tr.Unstable > 0 {
			*evl = append(*evl, fmt.Sprintf("trace: %d writes whose page changed under I/O (both threads saw the new bytes; not counted)", tr.Unstable))
		}
		if tr.UserFaults > 0 {
			*evl = append(*evl, fmt.Sprintf("trace: %d copies faulted on the daemon's own buffer (not the bug)", tr.UserFaults))
		}
	}
	if len(ev.Stress) > 0 {
		rc.Stress = cr.stressSummary(ev.Stress)
		s := rc.Stress
		switch {
		case s.Mismatches > 0 && s.Example != "":
			*evl = append(*evl, fmt.Sprintf("data: %d mismatches (first after %d ms of %s stress); %s", s.Mismatches, s.FirstMS, s.FirstStep, s.Example))
		case s.Mismatches > 0:
			*evl = append(*evl, fmt.Sprintf("data: %d mismatches (first after %d ms of %s stress)", s.Mismatches, s.FirstMS, s.FirstStep))
		default:
			*evl = append(*evl, fmt.Sprintf("data: %d reads, %d writes, %d other operations checked, no mismatch", s.Reads, s.Writes, s.Ops))
		}
		if s.IOErrors > 0 {
			*evl = append(*evl, fmt.Sprintf("data: %d I/O errors", s.IOErrors))
		}
	}
	if d.Crash != nil {
		line := "crash: " + d.Crash.Title
		if d.Attribution != "" {
			line += " (" + d.Attribution + ")"
		}
		*evl = append(*evl, line)
	}
	if rc.Canary != "" {
		*evl = append(*evl, "canary: "+rc.Canary)
	}
	if w := rc.Window; w != nil {
		line := fmt.Sprintf("kernel log: records %d..%d (%d read)", w.Start+1, w.End, w.Records)
		if w.Lost > 0 {
			line += fmt.Sprintf(", %d LOST", w.Lost)
		}
		*evl = append(*evl, line)
	}
	cr.stopMu.Lock()
	if !cr.stressStart.IsZero() && !cr.stopAt.IsZero() {
		rc.StopMS = cr.stopAt.Sub(cr.stressStart).Milliseconds()
		rc.StopReason = cr.stopReason
		*evl = append(*evl, fmt.Sprintf("stress: stopped after %.1f s (%s)", float64(rc.StopMS)/1000, cr.stopReason))
	}
	cr.stopMu.Unlock()
	for _, s := range ev.Failed {
		*evl = append(*evl, fmt.Sprintf("%s step %q: %s", s.Phase, s.Name, s.Detail))
	}
	*evl = append(*evl, "verdict: "+strings.Join(d.Reasons, "; "))
}

// stressSummary adds up the stress reports; blkstress's details become an example,
// any other tool's details are shown as text.
func (cr *cellRun) stressSummary(st []verdict.Stress) *report.Stress {
	s := &report.Stress{FirstMS: -1}
	var tools []string
	for _, x := range st {
		r := x.Report
		s.Reads += r.Reads
		s.Writes += r.Writes
		s.Ops += r.Ops
		s.IOErrors += r.IOErrors
		s.Seconds += r.Seconds
		for k, n := range r.Interleavings {
			if s.Interleavings == nil {
				s.Interleavings = map[string]int64{}
			}
			s.Interleavings[k] += n
		}
		if r.Tool != "" && !contains(tools, r.Tool) {
			tools = append(tools, r.Tool)
		}
		if r.Mismatches > 0 && s.Mismatches == 0 {
			s.FirstMS, s.FirstStep = r.FirstMS, x.Step
			s.Example = example(r)
		}
		s.Mismatches += r.Mismatches
	}
	s.Tools = strings.Join(tools, ",")
	return s
}

func example(r *stressreport.Report) string {
	if m := r.BlockMismatches(); len(m) > 0 {
		d := m[0]
		return fmt.Sprintf("block %d: wanted gen %d crc %s, read crc %s, which holds %s (blocks read back wrong)", d.Block, d.WantGen, d.WantCRC, d.SeenCRC, d.Holds)
	}
	if len(r.Details) > 0 {
		t := strings.Join(strings.Fields(string(r.Details)), " ")
		if len(t) > 300 {
			t = t[:300] + "…"
		}
		return "details: " + t
	}
	return ""
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func kinds(m map[string]int) string {
	var k []string
	for n, c := range m {
		k = append(k, fmt.Sprintf("%d %s", c, n))
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}
