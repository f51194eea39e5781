//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/run"
)

// The e2e tests' shared steps: build the CLI, run it for an exit code, read a run's
// results, load a job of the repository and run its cells.

// buildCLI builds the kmodlab command into a temporary directory, as a user runs it.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kmodlab")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/kmodlab").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return bin
}

// runExit runs the command and wants it to exit with code want (report.Exit*);
// it returns what the command printed.
func runExit(t *testing.T, want int, bin string, args ...string) string {
	t.Helper()
	log, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != want {
		t.Fatalf("exit: %v, want %d\n%s", err, want, log)
	}
	return string(log)
}

// onlyCell reads the results of a one-cell run from its results directory.
func onlyCell(t *testing.T, out string) *report.Cell {
	t.Helper()
	rep, err := report.Read(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 1 {
		t.Fatalf("%d cells in %s, want 1", len(rep.Cells), out)
	}
	return rep.Cells[0]
}

// loadJob loads a job file of the repository (rel to its root) for a QEMU fleet.
func loadJob(t *testing.T, rel string) (*fleet.Fleet, *job.Job) {
	t.Helper()
	f := &fleet.Fleet{Builder: builder(t), Accel: "auto"}
	j, err := job.Load(filepath.Join(repoRoot(t), rel), f.Known)
	if err != nil {
		t.Fatal(err)
	}
	return f, j
}

// runCells runs cells of j side by side (run.DefaultParallel), with the canary, and
// logs the verdict matrix.
func runCells(t *testing.T, ctx context.Context, f *fleet.Fleet, j *job.Job, cells []job.Cell, seed int64, out string, vars map[string]string) *report.Run {
	t.Helper()
	rep, err := run.Run(ctx, run.Options{Job: j, Cells: cells, Seed: seed, Out: out, Parallel: run.DefaultParallel(),
		Vars: vars, Machines: f, CacheDir: f.Builder.CacheDir, Canary: true, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Matrix())
	return rep
}
