package report

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

func buildRun() *Run {
	return &Run{Job: "rd", JobFile: "examples/rapiddisk/job.yaml", Cells: []*Cell{
		{ID: "armv7-lpae", Target: "armv7-lpae", Outcome: Outcome{Verdict: verdict.Clean, Met: true}, Expect: "clean", Build: &Build{Warnings: 1, List: []string{"rapiddisk.c:104: no previous prototype for 'x'"}}},
		{ID: "armv7-lpae@trixie", Target: "armv7-lpae@trixie", Outcome: Outcome{Verdict: verdict.BuildFailed, Met: true}, Expect: "build-fails", Evidence: []string{"build: rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'"},
			Build: &Build{FirstError: "rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'", Module: "rapiddisk"},
			BuildSource: &Source{File: "examples/rapiddisk/rapiddisk/rapiddisk.c", Line: 815,
				Frame: "rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'"}},
	}}
}

func TestBuildFailedExitAndAnnotation(t *testing.T) {
	r := buildRun()
	if r.Code() != 0 {
		t.Errorf("an expected BUILD-FAILED: exit %d, want 0", r.Code())
	}
	a := r.Annotations()
	if len(a) != 1 || !strings.HasPrefix(a[0], "::notice file=examples/rapiddisk/rapiddisk/rapiddisk.c,line=815,title=armv7-lpae@trixie%3A BUILD-FAILED::") {
		t.Errorf("annotations: %q", a)
	}
	r.Cells[1].Expect, r.Cells[1].Met = "clean", false
	if r.Code() != 1 {
		t.Errorf("an unexpected BUILD-FAILED is a finding: exit %d, want 1 (not 2: the lab did judge)", r.Code())
	}
	a = r.Annotations()
	if len(a) != 1 || !strings.HasPrefix(a[0], "::error file=examples/rapiddisk/rapiddisk/rapiddisk.c,line=815,") ||
		!strings.Contains(a[0], "implicit declaration of function 'blk_queue_logical_block_size'") {
		t.Errorf("annotations: %q", a)
	}
	junit, _ := r.JUnit()
	if !strings.Contains(string(junit), `<failure message="BUILD-FAILED, expected clean" type="BUILD-FAILED">`) {
		t.Errorf("junit:\n%s", junit)
	}
	if html := r.HTML(); !strings.Contains(html, `class="buildfailed missed"`) {
		t.Error("the HTML matrix has no BUILD-FAILED colour")
	}
	if r.Warnings() != 1 || r.Cells[0].Build.WarningSummary() != "1 W=1 warning (first: rapiddisk.c:104: no previous prototype for 'x')" {
		t.Errorf("warnings %d %q", r.Warnings(), r.Cells[0].Build.WarningSummary())
	}
	if got := r.Cells[1].BuildLine(); got != "FAILED rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'" {
		t.Errorf("build line %q", got)
	}
}

// A run's and a sweep's build verdicts and expectations pass merge's shard check.
func TestBuildVerdictsValidate(t *testing.T) {
	r := buildRun()
	r.Cells = append(r.Cells, &Cell{ID: "6.1.0-47/x86_64", Target: "6.1.0-47", Outcome: Outcome{Verdict: "built", Met: true}, Expect: "builds", Build: &Build{Seconds: 1.5, CPUSeconds: 1.2}})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseShard("results.json", data); err != nil {
		t.Errorf("%v", err)
	}
	r.Cells[1].BuildSource.Line = -1
	data, _ = json.Marshal(r)
	if _, err := ParseShard("results.json", data); err == nil || !strings.Contains(err.Error(), "build_source.line") {
		t.Errorf("a negative line: %v", err)
	}
}
