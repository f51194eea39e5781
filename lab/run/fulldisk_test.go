package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
)

// smallDisk mounts a tmpfs of size bytes for the test (root only: skipped otherwise).
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes a file into dir until the disk is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// counting counts the machines the pipeline acquired.
type counting struct {
	machines
	n *atomic.Int32
}

func (m counting) Acquire(ctx context.Context, target, log string) (runner.Runner, error) {
	m.n.Add(1)
	return m.machines.Acquire(ctx, target, log)
}

// leftovers lists the temporary files a writer left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && (strings.Contains(fi.Name(), ".tmp-") || strings.HasPrefix(fi.Name(), ".kmodlab-probe")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A results directory on a full disk: the run stops before any machine starts, with an
// error naming the directory and the cause; no probe file is left behind.
func TestFullResultsDirStopsBeforeAnyMachine(t *testing.T) {
	disk := smallDisk(t, 256<<10)
	fill(t, disk)
	f := newFake()
	good(f)
	var acquired atomic.Int32
	j := loadJob(t, testJob)
	out := filepath.Join(disk, "results")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, Options{Job: j, Cells: j.Cells(), Machines: counting{machines{f}, &acquired}, CacheDir: cacheDir, Out: out,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "results directory "+out) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want the results directory and ENOSPC", err)
	}
	if acquired.Load() != 0 || time.Since(start) > 10*time.Second {
		t.Errorf("%d machines acquired, %v spent: want none, at once", acquired.Load(), time.Since(start))
	}
	if l := leftovers(t, disk); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// The disk fills while the cell runs: the verdict is still decided and returned (the
// terminal shows it), the error names the report that could not be written, no
// half-written report is left, and the machine is released.
func TestDiskFillsDuringRun(t *testing.T) {
	disk := smallDisk(t, 2*report.ProbeSize)
	f := newFake()
	good(f)
	inner := f.steps["stress-step"]
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		fill(t, disk)
		return inner(ctx, f)
	}
	j := loadJob(t, testJob)
	out := filepath.Join(disk, "results")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Job: j, Cells: j.Cells(), Machines: machines{f}, CacheDir: cacheDir, Out: out,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Progress: &progress})
	if err == nil || !strings.Contains(err.Error(), "write reports") || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want write reports: … ENOSPC", err)
	}
	if rep == nil || len(rep.Cells) != 1 || rep.Cells[0].Verdict != verdict.Clean {
		t.Fatalf("the verdict was lost: %+v", rep)
	}
	if f.closed == 0 {
		t.Error("the machine was not released")
	}
	if _, err := os.Stat(filepath.Join(out, "results.json")); err == nil {
		t.Error("a results.json was written on a full disk")
	}
	if l := leftovers(t, disk); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// The guest's own disk fills during stress: the tool cannot write its report and its
// step fails. That is no evidence of anything: INCONCLUSIVE, naming the step, never
// clean, and the tool's error is in the step's log.
func TestGuestDiskFullIsInconclusive(t *testing.T) {
	f := newFake()
	f.stepsOut = map[string]func(context.Context, *fake, io.Writer) error{
		"stress-step": func(ctx context.Context, f *fake, stdout io.Writer) error {
			f.printk(0, reads(6, false, "0000000a")...)
			fmt.Fprintln(stdout, "blkstress: write /root/s.json: no space left on device")
			return &runner.ExitError{Cmd: "stress-step", Status: 1}
		},
	}
	rep := runJob(t, f, testJob, Options{})
	c := one(t, rep)
	reasons := strings.Join(c.Reasons, "\n")
	if c.Verdict != verdict.Inconclusive || c.Met || !strings.Contains(reasons, `stress step "io" failed`) {
		t.Fatalf("%s met=%v %v", c.Verdict, c.Met, c.Reasons)
	}
	log, err := os.ReadFile(filepath.Join(c.LogDir, "stress-io.log"))
	if err != nil || !strings.Contains(string(log), "no space left on device") {
		t.Errorf("stress-io.log: %q %v", log, err)
	}
}
