package run

import (
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/lab/verdict"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Divergences are charted in ms since stress started: one from before (setup) would be
// a negative time, which the report cannot draw and merge refuses.
func TestDivergencesBeforeStressAreNotCharted(t *testing.T) {
	cr := &cellRun{rc: &report.Cell{FirstDivergenceMS: -1, StopMS: -1}, stressKernUS: 5_000_000}
	tr := &trace.Result{DivergenceTS: []int64{-1, 1_000_000, 4_999_999, 5_000_000, 6_500_000}}
	cr.summarize(verdict.Evidence{Trace: tr}, verdict.Decision{})
	if got := cr.rc.Divergences; len(got) != 2 || got[0] != 0 || got[1] != 1500 || cr.rc.FirstDivergenceMS != 0 {
		t.Errorf("divergences %v, first %d; want [0 1500], 0", got, cr.rc.FirstDivergenceMS)
	}
}

// A fuzzer's interleaving counts reach results.json (stress.interleavings), added up over
// the cell's stress steps, and index.html shows them.
func TestInterleavingsReachResults(t *testing.T) {
	cr := &cellRun{rc: &report.Cell{ID: "x86_64/kmap", Target: "x86_64", Verdict: report.Clean, Expect: "clean", Met: true,
		FirstDivergenceMS: -1, StopMS: -1}}
	st := []verdict.Stress{
		{Step: "fuzz", Report: &stressreport.Report{Tool: "userblkfuzz", Ops: 10, FirstMS: -1,
			Interleavings: map[string]int64{"timeout_busy": 3, "close_busy": 1}}},
		{Step: "fuzz2", Report: &stressreport.Report{Tool: "userblkfuzz", FirstMS: -1,
			Interleavings: map[string]int64{"timeout_busy": 4, "midbio_error": 9}}},
		{Step: "io", Report: &stressreport.Report{Tool: "blkstress", Reads: 5, FirstMS: -1}},
	}
	s := cr.stressSummary(st)
	want := map[string]int64{"timeout_busy": 7, "close_busy": 1, "midbio_error": 9}
	if len(s.Interleavings) != len(want) {
		t.Fatalf("interleavings %v, want %v", s.Interleavings, want)
	}
	for k, n := range want {
		if s.Interleavings[k] != n {
			t.Errorf("interleavings[%s] = %d, want %d", k, s.Interleavings[k], n)
		}
	}
	if none := cr.stressSummary(st[2:]); none.Interleavings != nil {
		t.Errorf("blkstress alone: interleavings %v, want none (omitted from JSON)", none.Interleavings)
	}
	cr.rc.Stress = s
	r := &report.Run{Job: "j", Cells: []*report.Cell{cr.rc}}
	if h := r.HTML(); !strings.Contains(h, "<code>timeout_busy</code> 7") {
		t.Errorf("index.html does not show the interleavings: %.2000s", h)
	}
}
