//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// kmodlabTemps lists the lab's temporary directories (QEMU's, the run's).
func kmodlabTemps() map[string]bool {
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), "kmodlab-*"))
	out := map[string]bool{}
	for _, p := range m {
		out[p] = true
	}
	return out
}

func newTemps(before map[string]bool) []string {
	var out []string
	for p := range kmodlabTemps() {
		if !before[p] {
			out = append(out, p)
		}
	}
	return out
}

// allQemu counts QEMU processes on the host: kmodlab's QEMU is not this test's child
// but the CLI's, so an orphan would be re-parented; e2e tests run alone under the heavy
// lock, so any QEMU after a run that had none before is the run's.
func allQemu() int {
	out, _ := exec.Command("pgrep", "qemu-system").Output()
	return len(strings.Fields(string(out)))
}

// TestResultsOnFullDisk: kmodlab run with --out on a full filesystem (a 256 KiB tmpfs,
// filled) fails at once with exit 2 and an error naming the directory and the cause,
// and starts nothing: no QEMU, no temporary directory left.
func TestResultsOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	bin := buildCLI(t)
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("mount: %v", err)
	}
	defer syscall.Unmount(disk, syscall.MNT_DETACH)
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(disk, "filler"), "bs=4k").Run() // until ENOSPC
	before, qemus := kmodlabTemps(), allQemu()
	out := filepath.Join(disk, "results")
	log := runExit(t, 2, bin, "run", filepath.Join(repoRoot(t), "jobs", "highmem-coherency.yaml"),
		"--cell", "x86_64/kmap", "--out", out)
	if !strings.Contains(string(log), "results directory "+out) || !strings.Contains(string(log), "no space left on device") {
		t.Errorf("the error does not say where and why:\n%s", log)
	}
	if n := allQemu(); n > qemus {
		t.Errorf("%d QEMU processes running, %d before", n, qemus)
	}
	if l := newTemps(before); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// TestGuestTmpFull: the guest's /tmp (made 2 MiB) fills during stress, so the stress
// tool cannot write its report there. The verdict says so (INCONCLUSIVE: the stress
// step failed; never clean), kmodlab exits 1, and nothing is left running.
func TestGuestTmpFull(t *testing.T) {
	bin := buildCLI(t)
	jf := filepath.Join(repoRoot(t), "jobs", ".e2e-tmpfull.yaml")
	report1 := `{"tool":"sh","seed":1,"seconds":1,"reads":500,"writes":500,"io_errors":0,"mismatches":0,"first_mismatch_ms":-1}`
	os.WriteFile(jf, []byte(fmt.Sprintf(`name: tmpfull
targets: [x86_64]
setup:
  - {name: small-tmp, run: "mount -o remount,size=2m /tmp"}
stress:
  - name: fill
    run: |
      dd if=/dev/zero of=/tmp/filler bs=64k 2>/dev/null || true
      echo '%s' > /tmp/s.json
    report: /tmp/s.json
teardown:
  - {name: clean-tmp, run: "rm -f /tmp/filler /tmp/s.json"}
expect: {default: clean, min_evidence: {io: 10}}
`, report1)), 0o644)
	defer os.Remove(jf)
	before, qemus := kmodlabTemps(), allQemu()
	out := t.TempDir()
	log := runExit(t, 1, bin, "run", jf, "--out", out)
	c := onlyCell(t, out)
	reasons := strings.Join(c.Reasons, "\n")
	if c.Verdict != verdict.Inconclusive || c.Met || !strings.Contains(reasons, `stress step "fill" failed`) {
		t.Errorf("%s met=%v %v\n%s", c.Verdict, c.Met, c.Reasons, log)
	}
	if step, _ := os.ReadFile(filepath.Join(c.LogDir, "stress-fill.log")); !strings.Contains(strings.ToLower(string(step)), "no space left") {
		t.Errorf("stress-fill.log does not say why: %q", step)
	}
	if n := allQemu(); n > qemus {
		t.Errorf("%d QEMU processes running, %d before", n, qemus)
	}
	if l := newTemps(before); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}
