package verdict

import (
	"fmt"
	"strings"

	"github.com/kmodlab/kmodlab/lab/observe/ktap"
)

// Tests is what one KTAP-speaking step reported (a kunit step's test module, a
// kselftest-style program's stdout).
type Tests struct {
	Step    string        `json:"step"`
	Source  string        `json:"source"` // "kernel log", "debugfs", "stdout"
	Cases   []ktap.Case   `json:"cases"`
	Problem *ktap.Problem `json:"problem,omitempty"` // truncated or malformed stream
}

// maxDiag is how many of a failing case's diagnostic lines go into the reasons.
const maxDiag = 6

// decideTests is rule 5b, after crashes, divergences and hangs: a failing case is
// TEST-FAILED, naming the case and its diagnostic lines; a truncated or malformed
// stream, or a step that reported no case at all, is INCONCLUSIVE with the line.
// Nil when the tests passed (or the cell ran none).
func decideTests(ev Evidence) *Decision {
	var d Decision
	var problems []string
	for _, t := range ev.Tests {
		for _, c := range t.Cases {
			if c.Status != ktap.Fail {
				continue
			}
			d.Verdict = TestFailed
			r := fmt.Sprintf("step %q: test case %s failed (line %d of its KTAP, from the %s)", t.Step, c.Path, c.Line, t.Source)
			if diag := diagLines(c.Log); diag != "" {
				r += ": " + diag
			}
			d.Reasons = append(d.Reasons, r)
		}
		switch {
		case t.Problem != nil:
			problems = append(problems, fmt.Sprintf("step %q: %s", t.Step, t.Problem.Error()))
		case len(t.Cases) == 0:
			problems = append(problems, fmt.Sprintf("step %q: no test case ran (%s)", t.Step, t.Source))
		}
	}
	if d.Verdict == TestFailed {
		for _, p := range problems {
			d.Reasons = append(d.Reasons, "also: "+p)
		}
		return &d
	}
	if len(problems) > 0 {
		return &Decision{Verdict: Inconclusive, Reasons: problems}
	}
	return nil
}

// diagLines are a case's log lines as one line each, "# " taken off, at most
// maxDiag of them.
func diagLines(log []string) string {
	var out []string
	for _, l := range log {
		l = strings.TrimSpace(strings.TrimPrefix(l, "#"))
		if l == "" {
			continue
		}
		if len(out) == maxDiag {
			out = append(out, "…")
			break
		}
		out = append(out, l)
	}
	return strings.Join(out, " | ")
}

// TestTotals counts the cases of a cell's KTAP steps.
func TestTotals(ts []Tests) ktap.Counts {
	var all []ktap.Case
	for _, t := range ts {
		all = append(all, t.Cases...)
	}
	return ktap.Count(all)
}
