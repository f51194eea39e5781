//go:build e2e

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/verdict"
)

// TestNothingRunsIsInconclusive: a job whose stress step does nothing has no evidence,
// so its cell is INCONCLUSIVE (never clean) and kmodlab run exits 1.
func TestNothingRunsIsInconclusive(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kmodlab")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/kmodlab").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	jf := filepath.Join(repoRoot(t), "jobs", ".e2e-nothing.yaml")
	os.WriteFile(jf, []byte(`name: nothing
targets: [x86_64]
stress:
  - {name: idle, run: "true"}
expect: {default: clean}
`), 0o644)
	defer os.Remove(jf)
	out := t.TempDir()
	cmd := exec.Command(bin, "run", jf, "--out", out)
	log, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1\n%s", err, log)
	}
	rep, err := report.Read(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Cells[0]
	if c.Verdict != verdict.Inconclusive || c.Met || !strings.Contains(strings.Join(c.Reasons, "\n"), "only 0 verified reads and writes") {
		t.Errorf("%s met=%v %v\n%s", c.Verdict, c.Met, c.Reasons, log)
	}
	// The window was cut (its start read from the machine) even though nothing in the
	// cell printed a record.
	if c.Window == nil || c.Window.Start == 0 || c.Window.End < c.Window.Start || c.Window.Lost != 0 {
		t.Errorf("the kernel log window: %+v", c.Window)
	}
}
