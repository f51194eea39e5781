package stop

import (
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// The default job's rule: min_evidence {transactions: 500, io: 40} × 3 over two steps.
var job = Rule{Min: verdict.MinEvidence{Transactions: 500, IO: 40}, Factor: 3, Steps: 2}

func TestTarget(t *testing.T) {
	r := Rule{Min: verdict.MinEvidence{Transactions: 500, IO: 40, Ops: 7}, Factor: 1.5}
	if got, want := r.Target(), (verdict.MinEvidence{Transactions: 750, IO: 60, Ops: 11}); got != want {
		t.Fatalf("Target() = %+v, want %+v (rounded up)", got, want)
	}
}

func TestDecide(t *testing.T) {
	ev := func(tx int, io int64) Evidence { return Evidence{Transactions: tx, IO: io} }
	for _, tc := range []struct {
		name   string
		rule   Rule
		step   Step
		stop   bool
		sure   bool
		reason string
	}{
		{name: "nothing yet", rule: job, step: Step{Graceful: true}},
		{name: "a divergence is a sure verdict", rule: job,
			step: Step{Now: Evidence{Diverged: 1}}, stop: true, sure: true, reason: "divergence confirmed"},
		{name: "a data mismatch is a sure verdict", rule: job,
			step: Step{Now: Evidence{Mismatches: 1}}, stop: true, sure: true, reason: "data read back wrong"},
		{name: "--full never stops", rule: Rule{Full: true, Min: job.Min, Factor: 3, Steps: 2},
			step: Step{Now: Evidence{Diverged: 5, Mismatches: 2, Transactions: 1e6, IO: 1e6}, Graceful: true}},
		// Step 0 of 2: its share is half of 1500 transactions and 120 I/O.
		{name: "first step: exactly its share", rule: job,
			step: Step{Now: ev(750, 60), Graceful: true}, stop: true,
			reason: "enough evidence: 750 transactions, 60 verified I/O (min_evidence × 3)"},
		{name: "first step: one transaction short", rule: job, step: Step{Now: ev(749, 60), Graceful: true}},
		{name: "first step: one I/O short", rule: job, step: Step{Now: ev(750, 59), Graceful: true}},
		{name: "first step: I/O enough, transactions short", rule: job, step: Step{Now: ev(100, 500), Graceful: true}},
		{name: "a tool that cannot stop cleanly runs to its cap", rule: job, step: Step{Now: ev(5000, 500)}},
		{name: "I/O errors: the cell is inconclusive anyway, run to the cap", rule: job,
			step: Step{Now: Evidence{Transactions: 5000, IO: 500, IOErrors: 1}, Graceful: true}},
		{name: "integrity problems: run to the cap", rule: job,
			step: Step{Now: Evidence{Transactions: 5000, IO: 500, Integrity: 1}, Graceful: true}},
		// Step 1 of 2: it must add its own share and bring the total to the target.
		{name: "second step: share added, total reached", rule: job,
			step: Step{Index: 1, AtStart: ev(750, 60), Now: ev(1500, 120), Graceful: true}, stop: true},
		{name: "second step: the first ran long, the second still does its share", rule: job,
			step: Step{Index: 1, AtStart: ev(5000, 400), Now: ev(5749, 459), Graceful: true}},
		{name: "second step: its share in transactions is enough (fs counts files as I/O)", rule: job,
			step: Step{Index: 1, AtStart: ev(800, 100), Now: ev(1550, 120), Graceful: true}, stop: true,
			reason: "1550 transactions, 120 verified I/O"},
		{name: "second step: its share in I/O is enough", rule: job,
			step: Step{Index: 1, AtStart: ev(1400, 60), Now: ev(1500, 120), Graceful: true}, stop: true},
		{name: "second step: its own share in neither measure", rule: job,
			step: Step{Index: 1, AtStart: ev(1400, 100), Now: ev(2149, 159), Graceful: true}},
		{name: "second step: share added but the first fell short", rule: job,
			step: Step{Index: 1, AtStart: ev(300, 20), Now: ev(1100, 100), Graceful: true}},
		{name: "second step: makes up for the first", rule: job,
			step: Step{Index: 1, AtStart: ev(300, 20), Now: ev(1500, 120), Graceful: true}, stop: true},
		{name: "a cell expected to reproduce is not stopped for evidence",
			rule: Rule{Min: job.Min, Factor: 3, Steps: 2, Hunting: true}, step: Step{Now: ev(1e6, 1e6), Graceful: true}},
		{name: "a cell expected to reproduce still stops at a sure verdict",
			rule: Rule{Min: job.Min, Factor: 3, Steps: 2, Hunting: true}, step: Step{Now: Evidence{Transactions: 10, Diverged: 1}, Graceful: true},
			stop: true, sure: true, reason: "divergence confirmed"},
		{name: "no factor: nothing is sized", rule: Rule{Min: job.Min, Steps: 2},
			step: Step{Now: ev(1e6, 1e6), Graceful: true}},
		{name: "no min_evidence: nothing to size by", rule: Rule{Factor: 3, Steps: 2},
			step: Step{Now: ev(1e6, 1e6), Graceful: true}},
		{name: "no steps", rule: Rule{Min: job.Min, Factor: 3},
			step: Step{Now: ev(1e6, 1e6), Graceful: true}},
		{name: "ops only (a fuzzer)", rule: Rule{Min: verdict.MinEvidence{Ops: 200}, Factor: 2, Steps: 1},
			step: Step{Now: Evidence{Ops: 400}, Graceful: true}, stop: true, reason: "enough evidence: 400 operations (min_evidence × 2)"},
		{name: "ops one short", rule: Rule{Min: verdict.MinEvidence{Ops: 200}, Factor: 2, Steps: 1},
			step: Step{Now: Evidence{Ops: 399, Transactions: 1e6, IO: 1e6}, Graceful: true}},
		{name: "ops: the second step must add its own share", rule: Rule{Min: verdict.MinEvidence{Ops: 100}, Factor: 1, Steps: 2},
			step: Step{Index: 1, AtStart: Evidence{Ops: 90}, Now: Evidence{Ops: 139}, Graceful: true}},
		{name: "ops: the second step added its share", rule: Rule{Min: verdict.MinEvidence{Ops: 100}, Factor: 1, Steps: 2},
			step: Step{Index: 1, AtStart: Evidence{Ops: 90}, Now: Evidence{Ops: 140}, Graceful: true}, stop: true},
		{name: "a step past the last counts as the last", rule: Rule{Min: verdict.MinEvidence{IO: 10}, Factor: 1, Steps: 1},
			step: Step{Index: 3, Now: Evidence{IO: 10}, Graceful: true}, stop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.rule.Decide(tc.step)
			if d.Stop != tc.stop || d.Sure != tc.sure {
				t.Fatalf("Decide = %+v, want stop %v sure %v", d, tc.stop, tc.sure)
			}
			if tc.reason != "" && !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q, want %q", d.Reason, tc.reason)
			}
			if !d.Stop && d.Reason != "" {
				t.Fatalf("no stop, yet a reason: %q", d.Reason)
			}
		})
	}
}
