//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// TestNothingRunsIsInconclusive: a job whose stress step does nothing has no evidence,
// so its cell is INCONCLUSIVE (never clean) and kmodlab run exits 1.
func TestNothingRunsIsInconclusive(t *testing.T) {
	bin := buildCLI(t)
	jf := filepath.Join(repoRoot(t), "jobs", ".e2e-nothing.yaml")
	os.WriteFile(jf, []byte(`name: nothing
targets: [x86_64]
stress:
  - {name: idle, run: "true"}
expect: {default: clean}
`), 0o644)
	defer os.Remove(jf)
	out := t.TempDir()
	log := runExit(t, 1, bin, "run", jf, "--out", out)
	c := onlyCell(t, out)
	if c.Verdict != verdict.Inconclusive || c.Met || !strings.Contains(strings.Join(c.Reasons, "\n"), "only 0 verified reads and writes") {
		t.Errorf("%s met=%v %v\n%s", c.Verdict, c.Met, c.Reasons, log)
	}
	// The window was cut (its start read from the machine) even though nothing in the
	// cell printed a record.
	if c.Window == nil || c.Window.Start == 0 || c.Window.End < c.Window.Start || c.Window.Lost != 0 {
		t.Errorf("the kernel log window: %+v", c.Window)
	}
}
