//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBisectPlantedFlip: a two-commit module history whose first commit plants a data
// flip that shows on x86_64 too; kmodlab bisect runs the bad revision, then the
// first, and names the first as the first bad commit, in two steps.
func TestBisectPlantedFlip(t *testing.T) {
	bin, tmp := buildCLI(t), t.TempDir()
	hist := filepath.Join(tmp, "hist")
	gen := exec.Command("../scripts/bisect-history.sh", hist, "2", "1")
	gen.Env = append(gen.Environ(), "BUG=flip")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	first, err := exec.Command("git", "-C", hist, "rev-parse", "HEAD~1").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "bisect", filepath.Join(hist, "job.yaml"), "--cell", "x86_64/kmap", "--good", "base", "--bad", "HEAD",
		"--repeat", "1", "--seed", "3", "--set", "stress=10s", "--out", filepath.Join(tmp, "out"))
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("bisect: %v\n%s", err, text)
	}
	want := "first bad commit: " + strings.TrimSpace(string(first)) + " (2 steps)"
	if !strings.Contains(text, want) {
		t.Errorf("want %q in:\n%s", want, text)
	}
	// "step 1: 01ad8460b0f5 (notes: entry 2) bad: REPRODUCED 1/1": the commit's subject
	// sits between the revision and its judgement.
	if !regexp.MustCompile(`(?m)^step 1: [0-9a-f]{12} \(.*\) bad: (REPRODUCED|CRASHED) 1/1$`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^step 2: [0-9a-f]{12} \(.*\) bad: (REPRODUCED|CRASHED) 1/1$`).MatchString(text) ||
		!strings.Contains(text, "replay: kmodlab bisect ") {
		t.Errorf("steps or replay line missing:\n%s", text)
	}
}
