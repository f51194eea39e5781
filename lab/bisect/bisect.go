// Package bisect finds the first commit of a module's history at which a cell shows
// a bug, as git bisect does, but judging each revision by a rate over repeats (a flaky
// bug is bad at a revision when enough of the repeats show it) and never calling a
// revision good that the lab could not judge: an INFRA or BUILD-FAILED revision is
// skipped, as git bisect skip does. Running a revision (check out, build, boot, run
// the cell) is the Runner's; this package only chooses revisions and judges them.
package bisect

import (
	"context"
	"fmt"
	"strings"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// Outcome is one revision's run of the cell: each repeat's verdict.
type Outcome struct {
	Verdicts []verdict.Verdict
	Evidence []string // the cell's evidence lines, for the report
	Replay   string   // the command that replays this run
}

// Runner runs the cell at a revision.
type Runner interface {
	Run(ctx context.Context, rev string) (Outcome, error)
}

// Judgements.
const (
	Good = "good"
	Bad  = "bad"
	Skip = "skip"
)

// shows are the verdicts that show a bug.
var shows = map[verdict.Verdict]bool{verdict.Reproduced: true, verdict.Crashed: true, verdict.Hung: true, verdict.TestFailed: true}

// cannot are the verdicts that judge nothing about the revision.
var cannot = map[verdict.Verdict]bool{verdict.Infra: true, verdict.BuildFailed: true}

// Judge judges an outcome: bad when the share of repeats showing the bug reaches
// minRate (0: any repeat), skip when every repeat was INFRA or BUILD-FAILED, good
// otherwise. It returns the rate as "REPRODUCED 3/5".
func Judge(o Outcome, minRate float64) (string, string) {
	n, bad, skip := len(o.Verdicts), 0, 0
	counts := map[verdict.Verdict]int{}
	var order []verdict.Verdict
	for _, v := range o.Verdicts {
		if counts[v] == 0 {
			order = append(order, v)
		}
		counts[v]++
		if shows[v] {
			bad++
		}
		if cannot[v] {
			skip++
		}
	}
	var parts []string
	for _, v := range order {
		parts = append(parts, fmt.Sprintf("%s %d/%d", v, counts[v], n))
	}
	rate := strings.Join(parts, ", ")
	switch {
	case n == 0 || skip == n:
		return Skip, rate
	case bad > 0 && float64(bad) >= minRate*float64(n):
		return Bad, rate
	}
	return Good, rate
}

// Step is one revision tried.
type Step struct {
	Rev      string
	Judged   string
	Rate     string
	Outcome  Outcome
	Err      error // the runner's error (the step is a skip)
	Position int   // the revision's index in the list
}

// Result is a bisection's answer.
type Result struct {
	FirstBad string // "" when not found
	Steps    []Step
	// NotShown: the bad revision itself did not show the bug (its step is Steps[0]).
	NotShown bool
	// Candidates, when skipped revisions hide the answer: the first bad is one of these.
	Candidates []string
}

// Run bisects revs (oldest first; the good revision is just before revs[0], the bad
// one is the last) with r. The bad revision is run first: a cell that does not show
// the bug there has nothing to bisect (NotShown).
func Run(ctx context.Context, revs []string, r Runner, minRate float64, progress func(Step)) (*Result, error) {
	if len(revs) == 0 {
		return nil, fmt.Errorf("no revisions between good and bad")
	}
	res := &Result{}
	judged := make([]string, len(revs))
	try := func(i int) string {
		o, err := r.Run(ctx, revs[i])
		s := Step{Rev: revs[i], Outcome: o, Err: err, Position: i}
		if err != nil {
			s.Judged = Skip
		} else {
			s.Judged, s.Rate = Judge(o, minRate)
		}
		res.Steps = append(res.Steps, s)
		judged[i] = s.Judged
		if progress != nil {
			progress(s)
		}
		return s.Judged
	}
	last := len(revs) - 1
	switch try(last) {
	case Good:
		res.NotShown = true
		return res, nil
	case Skip:
		return res, fmt.Errorf("the bad revision %s could not be judged (%s): nothing to bisect", revs[last], res.Steps[0].why())
	}
	lo, hi := -1, last // lo is good (-1: the good revision), hi is bad
	for hi-lo > 1 {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		i := pick(lo, hi, judged)
		if i < 0 {
			for k := lo + 1; k <= hi; k++ {
				res.Candidates = append(res.Candidates, revs[k])
			}
			return res, nil
		}
		switch try(i) {
		case Bad:
			hi = i
		case Good:
			lo = i
		}
	}
	res.FirstBad = revs[hi]
	return res, nil
}

// pick is the untried revision strictly between lo and hi nearest their middle, -1
// when every one of them was skipped.
func pick(lo, hi int, judged []string) int {
	mid := (lo + hi + 1) / 2
	for d := 0; d < hi-lo; d++ {
		for _, i := range []int{mid - d, mid + d} {
			if i > lo && i < hi && judged[i] == "" {
				return i
			}
		}
	}
	return -1
}

func (s Step) why() string {
	if s.Err != nil {
		return s.Err.Error()
	}
	return s.Rate
}

// Report prints the steps and the answer.
func (res *Result) Report(short func(string) string) string {
	var b strings.Builder
	for i, s := range res.Steps {
		fmt.Fprintf(&b, "step %d: %s %s: %s\n", i+1, short(s.Rev), s.Judged, s.why())
	}
	switch {
	case res.NotShown:
		fmt.Fprintf(&b, "the bug does not show at the bad revision %s here (%s): nothing to bisect\n", short(res.Steps[0].Rev), res.Steps[0].Rate)
		for _, e := range res.Steps[0].Outcome.Evidence {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	case res.FirstBad != "":
		fmt.Fprintf(&b, "first bad commit: %s (%d steps)\n", res.FirstBad, len(res.Steps))
	case len(res.Candidates) > 0:
		var c []string
		for _, r := range res.Candidates {
			c = append(c, short(r))
		}
		fmt.Fprintf(&b, "skipped revisions hide the first bad commit: it is one of %s\n", strings.Join(c, " "))
	}
	return b.String()
}
