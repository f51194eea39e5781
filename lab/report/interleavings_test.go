package report

import (
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/stressreport"
)

// A fuzzer's interleaving counts reach results.json (stress.interleavings), added up over
// the cell's stress steps, and index.html shows them.
func TestInterleavingsReachResults(t *testing.T) {
	c := &Cell{ID: "x86_64/kmap", Target: "x86_64", Outcome: Outcome{Verdict: verdict.Clean, Met: true, FirstDivergenceMS: -1, StopMS: -1}, Expect: verdict.ExpectClean}
	st := []verdict.Stress{
		{Step: "fuzz", Report: &stressreport.Report{Tool: "userblkfuzz", Ops: 10, FirstMS: -1,
			Interleavings: map[string]int64{"timeout_busy": 3, "close_busy": 1}}},
		{Step: "fuzz2", Report: &stressreport.Report{Tool: "userblkfuzz", FirstMS: -1,
			Interleavings: map[string]int64{"timeout_busy": 4, "midbio_error": 9}}},
		{Step: "io", Report: &stressreport.Report{Tool: "blkstress", Reads: 5, FirstMS: -1}},
	}
	s := stressOf(st)
	want := map[string]int64{"timeout_busy": 7, "close_busy": 1, "midbio_error": 9}
	if len(s.Interleavings) != len(want) {
		t.Fatalf("interleavings %v, want %v", s.Interleavings, want)
	}
	for k, n := range want {
		if s.Interleavings[k] != n {
			t.Errorf("interleavings[%s] = %d, want %d", k, s.Interleavings[k], n)
		}
	}
	if none := stressOf(st[2:]); none.Interleavings != nil {
		t.Errorf("blkstress alone: interleavings %v, want none (omitted from JSON)", none.Interleavings)
	}
	c.Stress = s
	r := &Run{Job: "j", Cells: []*Cell{c}}
	if h := r.HTML(); !strings.Contains(h, "<code>timeout_busy</code> 7") {
		t.Errorf("index.html does not show the interleavings: %.2000s", h)
	}
}
