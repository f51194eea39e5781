package fleet

import (
	"context"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/machine/qemu"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// qemuKind is the provider of the built-in QEMU targets (images/recipes), on any of
// their kernel lines: TARGET, TARGET@LINE.
type qemuKind struct{ f *Fleet }

func (qemuKind) Kind() runner.Kind { return runner.KindQEMU }

func (qemuKind) Owns(name string) bool {
	_, err := images.Lookup(name)
	return err == nil
}

func (qemuKind) Names() []string { return images.Names() }

func (qemuKind) Describe(name string) (runner.Info, error) {
	t, err := images.Lookup(name)
	if err != nil {
		return runner.Info{}, err
	}
	return qemu.Describe(t), nil
}

// Strategy cross-builds against the image's cached headers.
func (k qemuKind) Strategy(ctx context.Context, name, cacheDir string, strict bool) (build.Strategy, error) {
	t, err := images.Lookup(name)
	if err != nil {
		return nil, err
	}
	hdr, err := k.f.Builder.Headers(ctx, t)
	if err != nil {
		return nil, err
	}
	return &build.Cross{CacheDir: cacheDir, Strict: strict, Kbuild: build.Kbuild{Headers: hdr, Arch: t.ModuleBuild.Arch,
		CrossCompile: t.ModuleBuild.CrossCompile, CrossPackage: t.ModuleBuild.CrossPackage, Release: t.Kernel.Release}}, nil
}

// Acquire builds (cached) the image with the job's guest additions and boots it.
func (k qemuKind) Acquire(ctx context.Context, name, consoleLog string) (runner.Runner, error) {
	f := k.f
	t, err := images.Lookup(name)
	if err != nil {
		return nil, err
	}
	img, err := f.Builder.BuildWith(ctx, t, f.Guest)
	if err != nil {
		return nil, err
	}
	timeout := f.BootTimeout
	if timeout == 0 {
		timeout = 4 * time.Minute
	}
	g, err := qemu.Boot(ctx, qemu.Config{Image: img, Accel: f.Accel, ConsoleLog: consoleLog, Log: f.Log, NoSnapshot: f.NoSnapshot,
		Append: strings.Join(f.Cmdline, " ")}, f.Builder.KeyDir(), timeout)
	if err != nil {
		return nil, err
	}
	return g, nil
}
