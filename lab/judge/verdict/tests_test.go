package verdict

import (
	"os"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/observe/ktap"
)

// kunitOnly is a cell that ran a KUnit suite and nothing else.
func kunitOnly(text string) Evidence {
	d := ktap.Parse(text)
	return Evidence{Window: &kmsg.Window{Records: 40}, Canary: Canary{State: CanaryNoHighmem},
		Modules: []string{"kunit_example"},
		Tests:   []Tests{{Step: "kunit", Source: "kernel log", Cases: d.Cases(), Problem: d.Problem}}}
}

func fixture(t *testing.T, name string) string {
	data, err := os.ReadFile("../../observe/ktap/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return ktap.FromKernelLog(string(data))
}

func TestKTAPVerdicts(t *testing.T) {
	none := Expect{Want: ExpectClean}
	pass := "KTAP version 1\n1..1\n    # Subtest: s\n    1..2\n    ok 1 a\n    ok 2 b # SKIP no\nok 1 s\n"
	for _, tc := range []struct {
		name    string
		ev      Evidence
		verdict Verdict
		reason  string
	}{
		{"all pass", kunitOnly(pass), Clean, "test cases: 1 passed, 0 failed, 1 skipped, 0 todo"},
		{"a case fails", kunitOnly(fixture(t, "nested.log")), TestFailed,
			`step "kunit": test case kmodlab_example_fold.fold_carry failed (line 26 of its KTAP, from the kernel log): fold_carry: EXPECTATION FAILED at examples/kunit/kunit_example.c:61 | Expected kx_fold(0x1ffff) == 0x1, but`},
		{"truncated", kunitOnly(fixture(t, "short_plan.ktap")), Inconclusive, `step "kunit": KTAP line 4: truncated: the plan (line 2) says 3 tests, 2 results`},
		{"malformed", kunitOnly(fixture(t, "wrong_number.ktap")), Inconclusive, "KTAP line 4: malformed: test number 3, want 2"},
		{"no case", kunitOnly("KTAP version 1\n1..0\n"), Inconclusive, `step "kunit": no test case ran (kernel log)`},
		{"todo is no failure", kunitOnly(fixture(t, "skip_todo.ktap")), Clean, "0 failed, 1 skipped, 2 todo"},
	} {
		d := Decide(tc.ev, none)
		if d.Verdict != tc.verdict || !strings.Contains(strings.Join(d.Reasons, "\n"), tc.reason) {
			t.Errorf("%s: %s %q, want %s with %q", tc.name, d.Verdict, d.Reasons, tc.verdict, tc.reason)
		}
		if d.Verdict == TestFailed && d.Met {
			t.Errorf("%s: TEST-FAILED met %q", tc.name, none.Want)
		}
	}
	// A failing case with a truncated stream after it is still a failure, the
	// problem noted; a crash in the module outranks both.
	ev := kunitOnly("KTAP version 1\n1..2\nnot ok 1 a\n")
	if d := Decide(ev, none); d.Verdict != TestFailed || !strings.Contains(strings.Join(d.Reasons, "\n"), "also: step \"kunit\": KTAP line 3: truncated") {
		t.Errorf("fail then truncated: %s %q", d.Verdict, d.Reasons)
	}
	ev.Crashes = []console.Report{{Title: "Oops in kx_checksum", Kind: console.KindOops,
		Frames: []console.Frame{{Func: "kx_checksum", Module: "kunit_example"}}}}
	if d := Decide(ev, none); d.Verdict != Crashed || !d.Attributed {
		t.Errorf("crash in the test module: %s", d.Verdict)
	}
	// Repeats: a TEST-FAILED tie outranks REPRODUCED and INCONCLUSIVE.
	s := Aggregate([]Decision{{Verdict: Reproduced}, {Verdict: TestFailed}, {Verdict: Inconclusive}}, 0)
	if s.Verdict != TestFailed {
		t.Errorf("aggregate: %s", s.Verdict)
	}
}
