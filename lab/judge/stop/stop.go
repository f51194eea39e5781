// Package stop is the stop rule: while a cell's stress runs, it decides from the
// evidence streamed so far (the kernel log's trace and the stress tools' progress lines)
// whether the current stress step may end before its time cap. It is a pure function of
// what it is given, so every case is a table test; lab/run feeds it and acts on it.
//
// Two things end a step early:
//
//   - A sure verdict: a divergence the trace confirmed, or a data check that failed.
//     The cell can no longer be clean, so more stress only delays the next cell.
//   - Enough evidence: nothing diverged and the cell has checked min_evidence × factor
//     (the target). A cell's n stress steps share the target: step i (from 0) may stop
//     once the cell's total has reached (i+1)/n of the target in every measure the job
//     asks for, and the step itself added at least 1/n of the target in one of them.
//     So a step that fell short at its cap is made up by the next, and no step is
//     skipped because an earlier one ran long. (The "one of them" is for tools whose
//     units differ: blkstress's fs mode counts a verified 256 KiB file as one I/O, so
//     its share is better measured in the trace's per-page transactions.)
//
// A cell the job expects to reproduce or crash (Rule.Hunting) is never stopped for
// evidence: clean is the surprising outcome there, and a bug that shows after 220
// transactions on one run may need 700 on the next, so stopping at the clean bar would
// turn a slow reproduction into a miss. Its steps end at a sure verdict or their cap.
//
// Evidence only counts while it is sound: once the cell saw I/O errors or trace
// integrity problems it will be INCONCLUSIVE whatever follows, and the step runs to its
// cap so the report has the full picture. A step is only stopped for evidence when its
// tool said it can stop cleanly (it printed a progress line: it then finishes its
// current check and writes its report on SIGTERM).
package stop

import (
	"fmt"
	"math"
	"strings"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// Evidence is what a cell has shown so far.
type Evidence struct {
	Diverged     int   // trace transactions that diverged
	Mismatches   int64 // data checks that failed (stress progress and reports)
	Transactions int   // trace reads and writes judged with both views
	IO           int64 // verified reads and writes (stress progress and reports)
	Ops          int64 // other checked operations
	IOErrors     int64 // operations the kernel failed
	Integrity    int   // trace transactions that failed the integrity checks
}

// Rule is the job's stop rule for one cell.
type Rule struct {
	Full   bool                // --full: every step runs to its cap
	Min    verdict.MinEvidence // expect.min_evidence
	Factor float64             // expect.evidence_factor: 0 sizes nothing
	Steps  int                 // the job's stress steps
	// Hunting: the job expects the cell to reproduce or crash, so only a sure verdict
	// ends a step early.
	Hunting bool
}

// Step is where the current stress step stands.
type Step struct {
	Index    int      // the step's place among the stress steps, from 0
	AtStart  Evidence // the cell's evidence when the step began
	Now      Evidence // the cell's evidence now
	Graceful bool     // the step's tool stops cleanly on SIGTERM (it printed progress)
}

// Decision says whether to stop the step and why.
type Decision struct {
	Stop bool
	// Sure: the verdict can no longer become clean (stop at once, the step's report
	// is not needed). Otherwise the step is stopped for enough evidence and its tool
	// is asked to finish and write its report.
	Sure   bool
	Reason string
}

// Target is min × factor, the evidence a cell aims for (rounded up).
func (r Rule) Target() verdict.MinEvidence {
	return verdict.MinEvidence{
		Transactions: int(math.Ceil(float64(r.Min.Transactions) * r.Factor)),
		IO:           int64(math.Ceil(float64(r.Min.IO) * r.Factor)),
		Ops:          int64(math.Ceil(float64(r.Min.Ops) * r.Factor)),
	}
}

// Decide applies the rule to a step.
func (r Rule) Decide(s Step) Decision {
	if r.Full {
		return Decision{}
	}
	if s.Now.Diverged > 0 {
		return Decision{Stop: true, Sure: true, Reason: "sure verdict: divergence confirmed"}
	}
	if s.Now.Mismatches > 0 {
		return Decision{Stop: true, Sure: true, Reason: "sure verdict: data read back wrong"}
	}
	if r.Hunting || r.Factor <= 0 || r.Steps < 1 || !s.Graceful || (r.Min == verdict.MinEvidence{}) {
		return Decision{}
	}
	if s.Now.IOErrors > 0 || s.Now.Integrity > 0 {
		return Decision{}
	}
	t := r.Target()
	n, k := int64(r.Steps), min(int64(s.Index+1), int64(r.Steps))
	part := func(v, num int64) int64 { return (v*num + n - 1) / n } // v × num/n, rounded up
	type measure struct {
		name                 string
		target, added, total int64
	}
	var got []string
	own := false
	for _, m := range []measure{
		{"transactions", int64(t.Transactions), int64(s.Now.Transactions - s.AtStart.Transactions), int64(s.Now.Transactions)},
		{"verified I/O", t.IO, s.Now.IO - s.AtStart.IO, s.Now.IO},
		{"operations", t.Ops, s.Now.Ops - s.AtStart.Ops, s.Now.Ops},
	} {
		if m.target == 0 {
			continue
		}
		if m.total < part(m.target, k) {
			return Decision{}
		}
		own = own || m.added >= part(m.target, 1)
		got = append(got, fmt.Sprintf("%d %s", m.total, m.name))
	}
	if !own {
		return Decision{}
	}
	return Decision{Stop: true, Reason: fmt.Sprintf("enough evidence: %s (min_evidence × %g)", strings.Join(got, ", "), r.Factor)}
}
