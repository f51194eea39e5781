package report

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/ktap"
)

func kunitRun(t *testing.T) *Run {
	data, err := os.ReadFile("../observe/ktap/testdata/nested.log")
	if err != nil {
		t.Fatal(err)
	}
	d := ktap.Parse(ktap.FromKernelLog(string(data)))
	r := sample()
	r.Cells = append(r.Cells, &Cell{ID: "x86/kunit", Target: "x86", Outcome: Outcome{Verdict: TestFailed, Reasons: []string{"step \"kunit\": test case kmodlab_example_fold.fold_carry failed"}}, Expect: "clean",
		Tests: []verdict.Tests{{Step: "kunit", Source: "kernel log", Cases: d.Cases()}}})
	return r
}

func TestTestCasesInJUnitAndHTML(t *testing.T) {
	r := kunitRun(t)
	j, err := r.JUnit()
	if err != nil {
		t.Fatal(err)
	}
	s := string(j)
	for _, want := range []string{`name="kmodlab_example_fold.fold_carry" classname="kmodlab.x86/kunit.kunit"`,
		`<failure message="kmodlab_example_fold.fold_carry failed (line 26 of its KTAP, from the kernel log)" type="TEST-FAILED">`,
		`name="kmodlab_example.checksum_params.len 4096"`, `tests="10"`} {
		if !strings.Contains(s, want) {
			t.Errorf("junit lacks %s\n%s", want, s)
		}
	}
	h := r.HTML()
	if !strings.Contains(h, "Test cases of step kunit (kernel log)") || !strings.Contains(h, `<td class="fail">fail</td>`) ||
		!strings.Contains(h, "EXPECTATION FAILED at examples/kunit/kunit_example.c:61") {
		t.Errorf("html lacks the test cases")
	}
}

func TestRunAsKTAP(t *testing.T) {
	r := kunitRun(t)
	var b strings.Builder
	if err := r.KTAP(&b); err != nil {
		t.Fatal(err)
	}
	d := ktap.Parse(b.String())
	if d.Problem != nil {
		t.Fatalf("%v\n%s", d.Problem, b.String())
	}
	if len(d.Tests) != len(r.Cells) {
		t.Fatalf("%d tests for %d cells", len(d.Tests), len(r.Cells))
	}
	got := map[string]ktap.Status{}
	for _, c := range d.Cases() {
		got[c.Path] = c.Status
	}
	for path, want := range map[string]ktap.Status{"arm/atomic": ktap.Pass, "arm/kmap": ktap.Fail, "x86/atomic": ktap.Skip,
		"x86/kunit.kunit.kmodlab_example_fold.fold_carry": ktap.Fail, "x86/kunit.kunit.kmodlab_example_fold.fold_zero": ktap.Pass} {
		if got[path] != want {
			t.Errorf("%s: %q, want %q", path, got[path], want)
		}
	}
	// A real consumer: the kernel's own kunit.py, where a kernel source tree is at hand.
	kunit := os.Getenv("KMODLAB_KUNIT_PY")
	if kunit == "" {
		matches, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache/kmodlab/kernels/src/*/tools/testing/kunit/kunit.py"))
		if len(matches) == 0 {
			t.Skip("no kunit.py (set KMODLAB_KUNIT_PY)")
		}
		kunit = matches[0]
	}
	file := filepath.Join(t.TempDir(), "results.ktap")
	os.WriteFile(file, []byte(b.String()), 0o644)
	out, err := exec.Command("python3", kunit, "parse", file).CombinedOutput()
	// kunit.py exits 1 when a test failed, as two of these cells did.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("kunit.py parse: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"[FAILED] arm/kmap", "[FAILED] kunit.kmodlab_example_fold.fold_carry", "[SKIPPED] x86/atomic", "[PASSED] arm/atomic"} {
		if !strings.Contains(text, want) {
			t.Errorf("kunit.py does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "[ERROR]") || strings.Contains(text, "CRASHED") {
		t.Errorf("kunit.py found errors in our KTAP:\n%s", text)
	}
}
