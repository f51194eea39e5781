//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/machine/qemu"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// TestExampleJob runs examples/byom/job.yaml as a user would: sumdev.ko, the in-tree
// loop module and mkfs.ext4 through guest:, on x86_64 and armv7-lpae.
func TestExampleJob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, j := loadJob(t, "examples/byom/job.yaml")
	if err := f.CheckGuest(ctx, j); err != nil {
		t.Fatal(err)
	}
	if f.Guest.Empty() {
		t.Fatal("the example must use guest:")
	}
	// runCells runs the canary: without it a clean HIGHMEM cell is CANNOT-DETECT.
	rep := runCells(t, ctx, f, j, j.Cells(), 1, t.TempDir(), nil)
	if len(rep.Cells) != 2 {
		t.Fatalf("want the x86_64 and armv7-lpae cells, got %d", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		t.Logf("%s: %s: %s", c.ID, c.Verdict, strings.Join(c.Evidence, "; "))
		if !c.Met || c.Verdict != "clean" {
			t.Errorf("%s: %s, expected clean\n%s", c.ID, c.Verdict, c.Error)
		}
	}
}

// TestExampleJobUnknownPackage: a package the target's suite lacks fails at the job
// file's line before anything boots.
func TestExampleJobUnknownPackage(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/byom/job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "packages: [e2fsprogs]", "packages: [e2fsprogs, kmodlab-no-such-package]", 1)
	bad = strings.Replace(bad, "targets: [x86_64, armv7-lpae]", "targets: [armv7-lpae@trixie]", 1)
	bad += "root: " + repoRoot(t) + "\n"
	file := filepath.Join(t.TempDir(), "bad-job-test.yaml")
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fleet.Fleet{Builder: builder(t)}
	j, err := job.Load(file, f.Known)
	if err != nil {
		t.Fatal(err)
	}
	err = f.CheckGuest(context.Background(), j)
	var je *job.Error
	if !errors.As(err, &je) || !strings.Contains(err.Error(), `bad-job-test.yaml:11: guest.packages: no package "kmodlab-no-such-package" for armhf in trixie`) {
		t.Errorf("want the job's line and the suite, got %v", err)
	}
}

// TestTrixieBootWithModprobe boots a newer kernel line with additions: packages from
// trixie, and zram, whose dependencies modprobe must find in modules.dep.
func TestTrixieBootWithModprobe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	tg, err := images.Lookup("x86_64@trixie")
	if err != nil {
		t.Fatal(err)
	}
	b := builder(t)
	img, err := b.BuildWith(ctx, tg, images.Additions{Packages: []string{"e2fsprogs"}, Modules: []string{"zram"}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.BuildWith(ctx, tg, images.Additions{Modules: []string{"zram"}, Packages: []string{"e2fsprogs"}})
	if err != nil || again.Initrd != img.Initrd || again.Hash != img.Hash {
		t.Errorf("the same additions must share one cached overlay: %v %s %s", err, img.Initrd, again.Initrd)
	}
	g, err := qemu.Boot(ctx, qemu.Config{Image: img, Accel: "auto", ConsoleLog: filepath.Join(t.TempDir(), "console.log")}, b.KeyDir(), 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	t.Logf("x86_64@trixie up in %.1fs (%s)", g.BootTime.Seconds(), g.Accel)
	// zram's dependencies differ per kernel (trixie: lz4 compressors; zsmalloc is built
	// in): take them from the guest's modules.dep and check modprobe loaded each.
	out, err := runner.Output(ctx, g, `uname -r
deps=$(sed -n 's|^.*/zram.ko:||p' /lib/modules/$(uname -r)/modules.dep)
echo "deps:$deps"
modprobe zram
for d in $deps zram.ko; do n=$(basename $d .ko | tr - _); grep -q "^$n " /proc/modules && echo "loaded:$n"; done
mkfs.ext4 -V 2>&1 | head -1`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != tg.Kernel.Release || !strings.HasPrefix(lines[0], "6.12.") {
		t.Fatalf("uname -r = %q, want %s", lines[0], tg.Kernel.Release)
	}
	deps := strings.Fields(strings.TrimPrefix(lines[1], "deps:"))
	if len(deps) == 0 {
		t.Fatalf("zram has dependencies on this kernel; modules.dep lists none:\n%s", out)
	}
	for _, d := range append(deps, "zram.ko") {
		n := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(d), ".ko"), "-", "_")
		if !strings.Contains(out, "loaded:"+n+"\n") {
			t.Errorf("modprobe zram did not load %s:\n%s", n, out)
		}
	}
	if !strings.Contains(out, "mke2fs 1.47") {
		t.Errorf("mkfs.ext4 from trixie's e2fsprogs:\n%s", out)
	}
}
