//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/internal/fsutil"
	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/run"
	"github.com/kmodlab/kmodlab/lab/sweep"
)

// planted is examples/byom's sumdev with a compile error that only 6.12 and newer see.
const planted = `
#include <linux/version.h>
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6,12,0)
static int __maybe_unused sumdev_planted(void)
{
	return kmodlab_planted_undeclared();
}
#endif
`

// plantedJob writes the byom job with the planted module into a fresh directory (its
// root) for targets, and returns the job file and the planted call's line.
func plantedJob(t *testing.T, targets string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/byom/sumdev/sumdev.c"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "planted"), 0o755)
	code := string(src) + planted
	line := strings.Count(code[:strings.Index(code, "kmodlab_planted_undeclared")], "\n") + 1
	os.WriteFile(filepath.Join(dir, "planted/sumdev.c"), []byte(code), 0o644)
	os.WriteFile(filepath.Join(dir, "planted/Kbuild"), []byte("obj-m += sumdev.o\n"), 0o644)
	if err := fsutil.CopyFile(filepath.Join(repoRoot(t), "examples/byom/check.sh"), filepath.Join(dir, "check.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/byom/job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "targets: [x86_64, armv7-lpae]", "targets: "+targets, 1)
	text = strings.Replace(text, "dir: examples/byom/sumdev", "dir: planted", 1)
	text = strings.Replace(text, "src: examples/byom/check.sh", "src: check.sh", 1)
	text += "  cells: {\"*@trixie\": build-fails}\nroot: .\n"
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, line
}

func checkPlanted(t *testing.T, c *report.Cell, line int) {
	t.Helper()
	if c.Verdict != verdict.BuildFailed || !c.Met {
		t.Fatalf("%s: %s met=%v %v, want BUILD-FAILED as expected\n%s", c.ID, c.Verdict, c.Met, c.Reasons, c.Error)
	}
	want := "sumdev.c:" + itoa(line) + ": implicit declaration of function 'kmodlab_planted_undeclared'"
	if c.Build == nil || !strings.HasPrefix(c.Build.FirstError, want) {
		t.Errorf("%s: first error %+v, want %q", c.ID, c.Build, want)
	}
	if c.BuildSource == nil || c.BuildSource.File != "planted/sumdev.c" || c.BuildSource.Line != line {
		t.Errorf("%s: annotated at %+v, want planted/sumdev.c:%d", c.ID, c.BuildSource, line)
	}
	if len(c.Build.Logs) == 0 {
		t.Fatalf("%s: no build log", c.ID)
	}
	if log, err := os.ReadFile(c.Build.Logs[0]); err != nil || !strings.Contains(string(log), "kmodlab_planted_undeclared") {
		t.Errorf("%s: the full build log is not in the cell's logs: %v", c.ID, err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestBuildFailedOnOneKernelLine: the planted error makes x86_64@trixie (6.12)
// BUILD-FAILED at its line, as the job expects, while bookworm's 6.1 builds, boots and
// is clean; nothing boots for the cell that did not build.
func TestBuildFailedOnOneKernelLine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	file, line := plantedJob(t, "[x86_64, x86_64@trixie]")
	f := &fleet.Fleet{Builder: builder(t), Accel: "auto"}
	j, err := job.Load(file, f.Known)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckGuest(ctx, j); err != nil {
		t.Fatal(err)
	}
	rep, err := run.Run(ctx, run.Options{Job: j, Cells: j.Cells(), Seed: 1, Out: t.TempDir(), Parallel: 1,
		Machines: f, CacheDir: f.Builder.CacheDir, Canary: true, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Matrix())
	byID := map[string]*report.Cell{}
	for _, c := range rep.Cells {
		byID[c.ID] = c
		t.Logf("%s: %s: %s", c.ID, c.Verdict, strings.Join(c.Evidence, "; "))
	}
	if c := byID["x86_64"]; c == nil || c.Verdict != verdict.Clean || !c.Met {
		t.Errorf("x86_64 (6.1): %+v, want clean", c)
	}
	checkPlanted(t, byID["x86_64@trixie"], line)
	if c := byID["x86_64@trixie"]; c.Timings["machine"] != 0 {
		t.Errorf("a cell that did not build booted a machine (%.1f s)", c.Timings["machine"])
	}
	if rep.Code() != 0 {
		t.Errorf("exit %d, want 0 (BUILD-FAILED was expected)", rep.Code())
	}
	if a := rep.Annotations(); len(a) != 1 || !strings.HasPrefix(a[0], "::notice file=planted/sumdev.c,line="+itoa(line)+",") {
		t.Errorf("annotations %q", a)
	}
}

// TestSweepTwoKernels: a compile-only sweep over two headers versions, the kernels the
// x86_64 lines boot (6.1 of bookworm, 6.12 of trixie): built on 6.1, BUILD-FAILED at
// the planted line on 6.12, and a report kmodlab merge takes.
func TestSweepTwoKernels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	file, line := plantedJob(t, "[x86_64, x86_64@trixie]")
	j, err := job.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []*images.Target
	var releases []string
	for _, n := range []string{"x86_64", "x86_64@trixie"} {
		tg, err := images.Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, tg)
		releases = append(releases, tg.Kernel.Release)
	}
	out := t.TempDir()
	o := sweep.Options{Job: j, Builder: builder(t), Targets: lines, Kernels: releases, Parallel: 1, Out: out, Progress: testWriter{t}}
	items, _, err := sweep.Kernels(ctx, o)
	if err != nil || len(items) != 2 {
		t.Fatalf("%d kernels (%v), want 2", len(items), err)
	}
	res, err := sweep.Run(ctx, o, items)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sweep.Table(res.Run))
	byKernel := map[string]*report.Cell{}
	for _, c := range res.Run.Cells {
		byKernel[c.Kernel] = c
	}
	if c := byKernel[releases[0]]; c == nil || c.Verdict != verdict.Built || !c.Met || c.Build.Seconds <= 0 {
		t.Errorf("%s: %+v, want built", releases[0], c)
	}
	checkPlanted(t, byKernel[releases[1]], line)
	if res.Run.Code() != 0 {
		t.Errorf("exit %d, want 0", res.Run.Code())
	}
	// The sweep's reports are a run's: merge takes them with the plan it wrote.
	shard, err := report.ReadShard(out)
	if err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Cells []string }
	data, _ := os.ReadFile(filepath.Join(out, "plan.json"))
	if err := json.Unmarshal(data, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan.json: %v", err)
	}
	merged, err := report.Merge(plan[0].Cells, []*report.Shard{shard})
	if err != nil || len(merged.Cells) != 2 || merged.Code() != 0 {
		t.Errorf("merge: %v", err)
	}
}
