//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
)

// TestFuzzJob runs jobs/userblk-fuzz.yaml as a user would (`kmodlab run`): userblkfuzz
// against userblk.ko in kmap and copier modes on every target. Every cell must be
// clean (no violated invariant, no oops, no hung task, enough ioctls) and the run
// must exit 0.
func TestFuzzJob(t *testing.T) {
	bin := buildCLI(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "run", "../jobs/userblk-fuzz.yaml", "--seed", "1", "--set", "fuzz=12s", "--out", out)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	err := cmd.Run()
	t.Logf("\n%s", log.String())
	if err != nil {
		t.Errorf("kmodlab run: %v, want exit 0", err)
	}
	rep, err := report.Read(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 6 {
		t.Errorf("%d cells, want 6 (3 targets x kmap, copier)", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		t.Logf("%s: %s: %s", c.ID, c.Verdict, strings.Join(c.Evidence, "; "))
		if c.Verdict != verdict.Clean || !c.Met {
			t.Errorf("%s: %s (expected clean): %s %s", c.ID, c.Verdict, strings.Join(c.Reasons, "; "), c.Error)
		}
		if c.Stress == nil || c.Stress.Ops < 200 {
			t.Errorf("%s: too little evidence: %+v", c.ID, c.Stress)
		}
	}
}
