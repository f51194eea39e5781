package run

import (
	"testing"

	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/lab/verdict"
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
