package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/ktap"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Findings is what the pipeline judged a cell from and what it decided: the report
// puts the verdict and the numbers behind it into the cell, and formats the evidence
// lines a person reads under the matrix.
type Findings struct {
	Evidence verdict.Evidence
	Decision verdict.Decision
	// StressKernelUS is the kernel's clock when stress started (µs), -1 unknown: the
	// divergences' times are charted from it.
	StressKernelUS int64
	// StopMS is when stress stopped after it started (-1: it never ran), StopReason why.
	StopMS     int64
	StopReason string
	// CrashSource is the crash's first frame in the job's modules, at its source line.
	CrashSource *Source
	// Notes are what went wrong or was kept on the way ("symbolize: …", a hung
	// machine's diagnosis); they come first.
	Notes []string
}

// Record puts a judged cell's verdict, numbers and evidence lines into c.
func (c *Cell) Record(f Findings) {
	ev, d := f.Evidence, f.Decision
	c.Verdict, c.Met, c.Reasons, c.Attributed, c.Attribution = d.Verdict, d.Met, d.Reasons, d.Attributed, d.Attribution
	c.Crash, c.CrashSource, c.Window = d.Crash, f.CrashSource, ev.Window
	c.CanaryState = ev.Canary.State
	if ev.Canary.State != "" {
		c.Canary = ev.Canary.State
		if ev.Canary.Detail != "" {
			c.Canary += " (" + ev.Canary.Detail + ")"
		}
	}
	if d.Verdict == verdict.Infra {
		var errs []string
		for _, s := range ev.Failed {
			errs = append(errs, fmt.Sprintf("%s step %q: %s", s.Phase, s.Name, s.Detail))
		}
		if len(errs) == 0 {
			errs = d.Reasons
		}
		c.Error = strings.Join(errs, "\n")
	}
	c.Evidence = append(c.Evidence, f.Notes...)
	c.summarize(f)
}

// summarize writes the evidence lines and the structured numbers behind them.
func (c *Cell) summarize(f Findings) {
	ev, d := f.Evidence, f.Decision
	evl := &c.Evidence
	if tr := ev.Trace; tr != nil {
		c.Trace = &TraceSummary{Transactions: tr.Transactions, Reads: tr.Reads, Writes: tr.Writes,
			Diverged: tr.Diverged(), Unparsed: tr.Unparsed, Merged: tr.Merged, Long: tr.Long,
			Integrity: tr.IntegrityTotal, UserFaults: tr.UserFaults, Unstable: tr.Unstable, Kinds: tr.Kinds}
		if len(tr.Divergences) > 0 {
			first := tr.Divergences[0]
			c.Trace.First = &first
			c.Trace.FirstTable = trace.Table(first.Events)
		}
		if len(tr.Problems) > 0 {
			pr := tr.Problems[0]
			c.Trace.Problem = &pr
		}
		if f.StressKernelUS >= 0 {
			// Times are after stress started: a divergence in setup (or an unknown
			// time, -1) is not on the stress run's chart.
			for _, ts := range tr.DivergenceTS {
				if ts >= f.StressKernelUS {
					c.Divergences = append(c.Divergences, (ts-f.StressKernelUS)/1000)
				}
			}
			if len(c.Divergences) > 0 {
				c.FirstDivergenceMS = c.Divergences[0]
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
		c.Stress = stressOf(ev.Stress)
		s := c.Stress
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
	if c.Canary != "" {
		*evl = append(*evl, "canary: "+c.Canary)
	}
	if w := c.Window; w != nil {
		line := fmt.Sprintf("kernel log: records %d..%d (%d read)", w.Start+1, w.End, w.Records)
		if w.Lost > 0 {
			line += fmt.Sprintf(", %d LOST", w.Lost)
		}
		*evl = append(*evl, line)
	}
	if f.StopMS >= 0 {
		c.StopMS, c.StopReason = f.StopMS, f.StopReason
		*evl = append(*evl, fmt.Sprintf("stress: stopped after %.1f s (%s)", float64(c.StopMS)/1000, f.StopReason))
	}
	for _, t := range ev.Tests {
		c.Tests = append(c.Tests, t)
		line := fmt.Sprintf("tests: step %q (%s): %d cases, %s", t.Step, t.Source, len(t.Cases), ktap.Count(t.Cases))
		if t.Problem != nil {
			line += "; " + t.Problem.Error()
		}
		*evl = append(*evl, line)
	}
	for _, s := range ev.Failed {
		*evl = append(*evl, fmt.Sprintf("%s step %q: %s", s.Phase, s.Name, s.Detail))
	}
	*evl = append(*evl, "verdict: "+strings.Join(d.Reasons, "; "))
}

// stressOf adds up the stress reports; blkstress's details become an example, any
// other tool's details are shown as text.
func stressOf(st []verdict.Stress) *Stress {
	t := verdict.Sum(st)
	s := &Stress{FirstMS: -1, Reads: t.Reads, Writes: t.Writes, Ops: t.Ops, IOErrors: t.IOErrors, Mismatches: t.Mismatches}
	var tools []string
	seen := false // a mismatch
	for _, x := range st {
		r := x.Report
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
		if r.Mismatches > 0 && !seen {
			seen = true
			s.FirstMS, s.FirstStep = r.FirstMS, x.Step
			s.Example = example(r)
		}
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
