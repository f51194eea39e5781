package report

import (
	"encoding/xml"

	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/trace"
)

func sample() *Run {
	return &Run{Job: "j", Cells: []*Cell{
		{ID: "arm/atomic", Target: "arm", Outcome: Outcome{Verdict: verdict.Reproduced, Met: true}, Expect: "reproduces", Evidence: []string{"trace: 3 of 9 diverged"},
			Trace: &TraceSummary{FirstTable: "oper ...\n", First: &trace.Divergence{Kind: "x", Detail: "y"}}, Divergences: []int64{5, 50, 500}},
		{ID: "arm/kmap", Target: "arm", Outcome: Outcome{Verdict: verdict.Reproduced, Met: false}, Expect: "clean", Evidence: []string{"data: 2 blocks"}},
		{ID: "x86/atomic", Target: "x86", Outcome: Outcome{Verdict: verdict.Infra, Met: false}, Expect: "clean", Error: "boot timeout"},
		{ID: "x86/kmap", Target: "x86", Outcome: Outcome{Verdict: verdict.Clean, Met: true}, Expect: "clean"},
	}}
}

func TestMeetsAndCode(t *testing.T) {
	if !Meets(verdict.Crashed, "reproduces") || Meets(verdict.Crashed, "clean") || Meets(verdict.CannotDetect, "clean") {
		t.Error("Meets")
	}
	// cannot-detect is met by CANNOT-DETECT alone: a cell of a hiding machine that
	// turns clean (or reproduces) must be noticed.
	for _, v := range []verdict.Verdict{verdict.CannotDetect, verdict.Clean, verdict.Reproduced, verdict.Inconclusive, verdict.Infra} {
		if got := Meets(v, "cannot-detect"); got != (v == verdict.CannotDetect) {
			t.Errorf("Meets(%s, cannot-detect) = %v", v, got)
		}
	}
	r := sample()
	if r.Code() != 2 {
		t.Errorf("code %d, want 2 (infra wins)", r.Code())
	}
	r.Cells = r.Cells[:2]
	if r.Code() != 1 {
		t.Errorf("code %d, want 1", r.Code())
	}
}

func TestJUnitShape(t *testing.T) {
	data, err := sample().JUnit()
	if err != nil {
		t.Fatal(err)
	}
	var s junitSuites
	if err := xml.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if s.Tests != 4 || s.Failures != 1 || s.Errors != 1 || len(s.Suites) != 2 {
		t.Fatalf("totals: %+v", s)
	}
	if s.Suites[0].Cases[1].Failure == nil || s.Suites[1].Cases[0].Error == nil {
		t.Error("failure and error elements")
	}
	if !strings.HasPrefix(string(data), "<?xml") || !strings.Contains(string(data), `<testsuites name="kmodlab j"`) {
		t.Errorf("header: %.80s", data)
	}
}

func TestMatrixAndMarkdownAndHTML(t *testing.T) {
	r := sample()
	m := r.Matrix()
	if !strings.Contains(m, "REPRODUCED!") || !strings.Contains(m, "atomic") || strings.Count(m, "\n") != 3 {
		t.Errorf("matrix:\n%s", m)
	}
	md := r.Markdown()
	if !strings.Contains(md, "| target | atomic | kmap |") || !strings.Contains(md, "**REPRODUCED** (expected clean)") {
		t.Errorf("markdown:\n%s", md)
	}
	h := r.HTML()
	if !strings.Contains(h, "<svg") || !strings.Contains(h, `class="reproduced missed"`) {
		t.Errorf("html lacks chart or missed mark")
	}
}

func TestRepeatsAndInconclusive(t *testing.T) {
	r := &Run{Job: "j", Cells: []*Cell{
		{ID: "x/a", Target: "x", Outcome: Outcome{Verdict: verdict.Reproduced, Met: true}, Expect: "reproduces", Rate: "REPRODUCED 29/30, clean 1/30",
			Runs: append(make([]RunResult, 29, 30), RunResult{Outcome: Outcome{Verdict: verdict.Clean, FirstDivergenceMS: -1}})},
		{ID: "x/b", Target: "x", Outcome: Outcome{Verdict: verdict.Inconclusive, Reasons: []string{"only 3 verified reads and writes (the job asks for 40)"}}, Expect: "clean"},
	}}
	for i := range r.Cells[0].Runs[:29] {
		r.Cells[0].Runs[i] = RunResult{Outcome: Outcome{Verdict: verdict.Reproduced, FirstDivergenceMS: int64(100 * (i + 1))}}
	}
	if m := r.Matrix(); !strings.Contains(m, "REPRODUCED 29/30") || !strings.Contains(m, "INCONCLUSIVE!") {
		t.Errorf("matrix:\n%s", m)
	}
	if d := r.Details(); !strings.Contains(d, "repeats: REPRODUCED 29/30, clean 1/30, first divergence median 1.5 s") {
		t.Errorf("details:\n%s", d)
	}
	md := r.Markdown()
	if !strings.Contains(md, "| REPRODUCED 29/30 |") || !strings.Contains(md, "**x/b**: INCONCLUSIVE, expected clean: only 3 verified") {
		t.Errorf("markdown:\n%s", md)
	}
	if h := r.HTML(); !strings.Contains(h, `class="inconclusive missed"`) || !strings.Contains(h, "<small>REPRODUCED 29/30, clean 1/30</small>") {
		t.Errorf("html lacks the inconclusive class or the rate")
	}
	if r.Code() != 1 {
		t.Errorf("INCONCLUSIVE exits 1, got %d", r.Code())
	}
	j, _ := r.JUnit()
	if !strings.Contains(string(j), `failures="1"`) {
		t.Errorf("junit: %s", j)
	}
}

func TestEveryVerdictHasAColour(t *testing.T) {
	for _, v := range verdict.All {
		if verdictColour[v] == "" {
			t.Errorf("verdict %s has no colour in index.html", v)
		}
		if v.Severity() == 0 {
			t.Errorf("verdict %s has no severity", v)
		}
	}
	if css := string(verdictCSS()); !strings.Contains(css, ".cannotdetect{background:#ddd}") || !strings.Contains(css, ".reproduced{background:#fde2c8}") {
		t.Errorf("verdict CSS: %s", css)
	}
}
