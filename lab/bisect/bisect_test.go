package bisect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// fake's verdicts depend on the revision: from firstBad on, bad of every 5 repeats
// reproduce; revisions in skip do not build (or boot).
type fake struct {
	firstBad int
	bad      int
	skip     map[int]verdict.Verdict
	ran      []int
}

func (f *fake) Run(_ context.Context, rev string) (Outcome, error) {
	var i int
	fmt.Sscanf(rev, "r%d", &i)
	f.ran = append(f.ran, i)
	if v, ok := f.skip[i]; ok {
		if v == "error" {
			return Outcome{}, errors.New("checkout failed")
		}
		return Outcome{Verdicts: []verdict.Verdict{v, v, v, v, v}}, nil
	}
	vs := make([]verdict.Verdict, 5)
	for k := range vs {
		vs[k] = verdict.Clean
		if i >= f.firstBad && k < f.bad {
			vs[k] = verdict.Reproduced
		}
	}
	return Outcome{Verdicts: vs, Evidence: []string{"trace: 0 of 900 transactions diverged"}}, nil
}

func revs(n int) []string {
	var r []string
	for i := 1; i <= n; i++ {
		r = append(r, fmt.Sprintf("r%d", i))
	}
	return r
}

func TestFindsFirstBadInLogSteps(t *testing.T) {
	for n := 1; n <= 40; n++ {
		for first := 1; first <= n; first++ {
			f := &fake{firstBad: first, bad: 5}
			res, err := Run(context.Background(), revs(n), f, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.FirstBad != fmt.Sprintf("r%d", first) {
				t.Fatalf("n=%d first=%d: found %q", n, first, res.FirstBad)
			}
			if limit := int(math.Ceil(math.Log2(float64(n)))) + 1; len(res.Steps) > limit {
				t.Errorf("n=%d first=%d: %d steps, more than log2(n)+1 = %d", n, first, len(res.Steps), limit)
			}
		}
	}
}

func TestRateJudgesFlakyRevisions(t *testing.T) {
	// 2 of 5 repeats reproduce from r6 on: bad at min_rate 0.4, never at 0.6.
	f := &fake{firstBad: 6, bad: 2}
	res, _ := Run(context.Background(), revs(9), f, 0.4, nil)
	if res.FirstBad != "r6" {
		t.Errorf("min rate 0.4: %q", res.FirstBad)
	}
	res, _ = Run(context.Background(), revs(9), &fake{firstBad: 6, bad: 2}, 0.6, nil)
	if !res.NotShown || res.Steps[0].Rate != "REPRODUCED 2/5, clean 3/5" {
		t.Errorf("min rate 0.6: not shown %v, rate %q", res.NotShown, res.Steps[0].Rate)
	}
	if j, _ := Judge(Outcome{Verdicts: []verdict.Verdict{verdict.Infra, verdict.Clean}}, 0); j != Good {
		t.Errorf("one clean repeat among INFRA: %s", j)
	}
}

func TestSkipsNeverCountAsGood(t *testing.T) {
	// r4 does not build, r7 does not boot: the bisection goes around them.
	f := &fake{firstBad: 6, bad: 5, skip: map[int]verdict.Verdict{4: verdict.BuildFailed, 7: verdict.Infra}}
	res, err := Run(context.Background(), revs(8), f, 0, nil)
	if err != nil || res.FirstBad != "r6" {
		t.Fatalf("%v %q\n%s", err, res.FirstBad, res.Report(func(s string) string { return s }))
	}
	// When the skipped revisions sit right before the first bad one, the answer is a set.
	f = &fake{firstBad: 5, bad: 5, skip: map[int]verdict.Verdict{4: verdict.BuildFailed, 5: "error"}}
	res, err = Run(context.Background(), revs(8), f, 0, nil)
	if err != nil || res.FirstBad != "" || strings.Join(res.Candidates, " ") != "r4 r5 r6" {
		t.Fatalf("%v first %q candidates %v\n%s", err, res.FirstBad, res.Candidates, res.Report(func(s string) string { return s }))
	}
	for _, s := range res.Steps {
		if (s.Rev == "r4" || s.Rev == "r5") && s.Judged != Skip {
			t.Errorf("%s judged %s", s.Rev, s.Judged)
		}
	}
	// A bad revision the lab cannot judge is an error, not "not shown".
	_, err = Run(context.Background(), revs(3), &fake{firstBad: 1, bad: 5, skip: map[int]verdict.Verdict{3: verdict.Infra}}, 0, nil)
	if err == nil || !strings.Contains(err.Error(), "the bad revision r3 could not be judged (INFRA 5/5)") {
		t.Errorf("unjudgeable bad revision: %v", err)
	}
}

func TestNotShownReportsEvidence(t *testing.T) {
	f := &fake{firstBad: 99, bad: 5}
	res, err := Run(context.Background(), revs(8), f, 0, nil)
	if err != nil || !res.NotShown || len(f.ran) != 1 {
		t.Fatalf("%v not shown %v, ran %v", err, res.NotShown, f.ran)
	}
	out := res.Report(func(s string) string { return s })
	if !strings.Contains(out, "the bug does not show at the bad revision r8 here (clean 5/5)") || !strings.Contains(out, "trace: 0 of 900") {
		t.Errorf("report:\n%s", out)
	}
}
