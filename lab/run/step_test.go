package run

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// sleepers lists the pids of running "sleep MARK" processes (this test's own).
func sleepers(mark string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && string(b) == "sleep\x00"+mark+"\x00" {
			pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
			out = append(out, pid)
		}
	}
	return out
}

// A stopped stress step is killed with everything it started, not only the shell's
// direct children (pkill -P): here two grandchildren. Run with the host's sh; the
// guests run busybox ash, whose setsid, kill and pkill take the same arguments.
func TestStepKillReachesTheWholeStep(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	mark := "3133" + time.Now().Format("150405")
	pidfile := filepath.Join(t.TempDir(), "step.pid")
	cmd := "sh -c 'sleep " + mark + " & sleep " + mark + "; wait' & wait"
	ctx, cancel := context.WithCancel(context.Background())
	step := exec.CommandContext(ctx, "sh", "-c", stepCommand(pidfile, cmd))
	if err := step.Start(); err != nil {
		t.Fatal(err)
	}
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for len(sleepers(mark)) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(sleepers(mark)); n != 2 {
		t.Fatalf("%d sleepers started, want 2", n)
	}
	// The lab's side: its SSH session ends (the command's shell is killed), then the kill.
	step.Process.Kill()
	step.Wait()
	if out, err := exec.Command("sh", "-c", killCommand(pidfile)).CombinedOutput(); err != nil && !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("kill: %v: %s", err, out)
	}
	for time.Now().Before(deadline) && len(sleepers(mark)) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if left := sleepers(mark); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("the step's grandchildren survived the kill: %v", left)
	}
	if _, err := os.Stat(pidfile); err == nil {
		t.Error("pidfile left behind")
	}
}

// Item 1: a failed stress step is never ignored, even when it leaves a report behind.

func TestFailedStepWithReport(t *testing.T) {
	f := newFake()
	good(f)
	inner := f.steps["stress-step"]
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		inner(ctx, f)
		return &runner.ExitError{Cmd: "stress-step", Status: 3}
	}
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != verdict.Inconclusive || !strings.Contains(strings.Join(c.Reasons, "\n"), `stress step "io" failed`) {
		t.Fatalf("%s %v", c.Verdict, c.Reasons)
	}
	c = one(t, runJob(t, f, strings.Replace(testJob, "report: /root/s.json}", "report: /root/s.json, on_failure: infra}", 1), Options{}))
	if c.Verdict != verdict.Infra {
		t.Fatalf("on_failure infra: %s %v", c.Verdict, c.Reasons)
	}
}
