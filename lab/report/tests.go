package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/ktap"
)

// KTAP test cases in the reports: each case of a cell's KUnit or kselftest steps is a
// JUnit testcase of its own (beside the cell's), a row in the HTML report, and a
// subtest in results.ktap, the whole run as KTAP for CI systems that read it.

// TestFailed is lab/judge/verdict's verdict for a failing KTAP case.
const TestFailed = verdict.TestFailed

// junitTests are the cell's KTAP cases as JUnit testcases, and how many failed and
// were skipped.
func junitTests(c *Cell) (cases []junitCase, failures, skipped int) {
	for _, t := range c.Tests {
		for _, k := range t.Cases {
			tc := junitCase{Name: k.Path, Classname: "kmodlab." + c.ID + "." + t.Step, Time: "0",
				SystemOut: strings.Join(k.Log, "\n")}
			switch k.Status {
			case ktap.Fail:
				tc.Failure = &junitMessage{Message: fmt.Sprintf("%s failed (line %d of its KTAP, from the %s)", k.Path, k.Line, t.Source),
					Type: string(verdict.TestFailed), Text: strings.Join(k.Log, "\n")}
				failures++
			case ktap.Skip, ktap.Todo:
				tc.Skipped = &junitSkipped{Message: k.Directive}
				skipped++
			}
			cases = append(cases, tc)
		}
		if p := t.Problem; p != nil {
			cases = append(cases, junitCase{Name: t.Step + " (KTAP stream)", Classname: "kmodlab." + c.ID + "." + t.Step, Time: "0",
				Error: &junitMessage{Message: p.Error(), Type: "ktap"}})
		}
	}
	return cases, failures, skipped
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

// KTAP writes the run as one KTAP document: a test per cell ("ok" when it met its
// expectation), its KTAP cases as subtests, its verdict's reasons as diagnostic
// lines. An INFRA cell is "ok … # SKIP": the lab could not judge it.
func (r *Run) KTAP(w io.Writer) error {
	var nodes []ktap.Node
	for _, c := range r.Cells {
		n := ktap.Node{Name: c.ID, Status: ktap.Pass}
		switch {
		case c.Verdict == verdict.Infra:
			n.Status, n.Directive = ktap.Skip, "SKIP INFRA: "+firstLine(c.Error)
		case !c.Met:
			n.Status = ktap.Fail
		}
		n.Diag = append(n.Diag, fmt.Sprintf("%s: %s (expected %s)", c.ID, c.Verdict, c.Expect))
		for _, reason := range c.Reasons {
			n.Diag = append(n.Diag, reason)
		}
		n.Diag = append(n.Diag, "replay: "+c.Replay)
		for _, t := range c.Tests {
			for _, k := range t.Cases {
				n.Subtests = append(n.Subtests, ktap.Node{Name: t.Step + "." + k.Path, Status: k.Status, Directive: k.Directive, Diag: k.Log})
			}
		}
		nodes = append(nodes, n)
	}
	return ktap.Write(w, nodes)
}
