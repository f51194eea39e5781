package report

import (
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Divergences are charted in ms since stress started: one from before (setup) would be
// a negative time, which the report cannot draw and merge refuses.
func TestDivergencesBeforeStressAreNotCharted(t *testing.T) {
	c := &Cell{Outcome: Outcome{FirstDivergenceMS: -1, StopMS: -1}}
	tr := &trace.Result{DivergenceTS: []int64{-1, 1_000_000, 4_999_999, 5_000_000, 6_500_000}}
	c.Record(Findings{Evidence: verdict.Evidence{Trace: tr}, StressKernelUS: 5_000_000, StopMS: -1})
	if got := c.Divergences; len(got) != 2 || got[0] != 0 || got[1] != 1500 || c.FirstDivergenceMS != 0 {
		t.Errorf("divergences %v, first %d; want [0 1500], 0", got, c.FirstDivergenceMS)
	}
	// An unknown stress start charts nothing.
	c = &Cell{Outcome: Outcome{FirstDivergenceMS: -1, StopMS: -1}}
	c.Record(Findings{Evidence: verdict.Evidence{Trace: tr}, StressKernelUS: -1, StopMS: -1})
	if len(c.Divergences) != 0 || c.FirstDivergenceMS != -1 {
		t.Errorf("unknown stress start: %v, first %d", c.Divergences, c.FirstDivergenceMS)
	}
}

// Record puts the verdict and the numbers behind it into the cell, and the lines a
// person reads in their order: notes first, the verdict's reasons last.
func TestRecordEvidenceLines(t *testing.T) {
	c := &Cell{Outcome: Outcome{FirstDivergenceMS: -1, StopMS: -1}, Evidence: []string{"build: 1 warning"}}
	st := []verdict.Stress{
		{Step: "a", Report: &stressreport.Report{Tool: "blkstress", Reads: 10, Writes: 5, Seconds: 1}},
		{Step: "b", Report: &stressreport.Report{Tool: "fsx", Reads: 1, Mismatches: 2, FirstMS: 300, Seconds: 2}},
	}
	failed := []verdict.Step{{Phase: "stress", Name: "b", Kind: verdict.FailExit, Detail: "exit status 1"}}
	c.Record(Findings{
		Evidence: verdict.Evidence{Stress: st, Failed: failed, Window: &kmsg.Window{Start: 41, End: 60, Records: 19, Lost: 2},
			Canary: verdict.Canary{State: "positive", Detail: "7 of 10"}},
		Decision: verdict.Decision{Verdict: verdict.Infra, Reasons: []string{"r1", "r2"}},
		StopMS:   1500, StopReason: "stress finished", Notes: []string{"symbolize: no DWARF"}, StressKernelUS: -1,
	})
	want := []string{
		"build: 1 warning",
		"symbolize: no DWARF",
		"data: 2 mismatches (first after 300 ms of b stress)",
		"canary: positive (7 of 10)",
		"kernel log: records 42..60 (19 read), 2 LOST",
		"stress: stopped after 1.5 s (stress finished)",
		`stress step "b": exit status 1`,
		"verdict: r1; r2",
	}
	if got := strings.Join(c.Evidence, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("evidence:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if c.Stress.Reads != 11 || c.Stress.Tools != "blkstress,fsx" || c.Stress.Seconds != 3 || c.Stress.FirstStep != "b" {
		t.Errorf("stress %+v", c.Stress)
	}
	if c.Error != `stress step "b": exit status 1` || c.StopMS != 1500 || c.CanaryState != "positive" || c.Window.End != 60 {
		t.Errorf("error %q stop %d canary %q window %+v", c.Error, c.StopMS, c.CanaryState, c.Window)
	}
}
