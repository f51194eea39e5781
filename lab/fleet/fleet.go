// Package fleet resolves a job's target names to machines: built-in QEMU targets
// (images/) and configured boards (lab/board). It implements run.Machines.
package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/board"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/qemu"
	"github.com/kmodlab/kmodlab/lab/runner"
)

// Fleet is every machine a job can name.
type Fleet struct {
	Guest       images.Additions // the job's guest: field (guest.go): installed on QEMU targets, checked on boards
	Cmdline     []string         // the job's guest.cmdline: added on QEMU targets, checked on boards
	Builder     *images.Builder
	Accel       string
	BootTimeout time.Duration
	Boards      *board.Config // nil: none configured
	Log         *slog.Logger
	NoSnapshot  bool // boot every QEMU machine cold (no saved machine state)
}

// Known reports whether a target or board name (or board label) exists.
func (f *Fleet) Known(name string) bool {
	if _, err := images.Lookup(name); err == nil {
		return true
	}
	return f.Boards != nil && len(f.Boards.Match(name)) > 0
}

// Names lists everything a job can name.
func (f *Fleet) Names() string {
	n := images.Names()
	if f.Boards != nil {
		for _, b := range f.Boards.Boards {
			n = append(n, b.Name)
		}
	}
	return strings.Join(n, ", ")
}

// Describe implements run.Machines.
func (f *Fleet) Describe(target string) (runner.Info, error) {
	if t, err := images.Lookup(target); err == nil {
		return runner.Info{Name: t.Name, Kind: "qemu", Target: t.Name, GOARCH: t.GOARCH, GOARM: t.GOARM,
			KernelRelease: t.Kernel.Release, Build: "cross"}, nil
	}
	if b, err := f.board(target); err == nil {
		return b.Info(), nil
	} else if f.Boards != nil && len(f.Boards.Match(target)) > 0 {
		return runner.Info{}, err
	}
	return runner.Info{}, fmt.Errorf("unknown target %q (known: %s)", target, f.Names())
}

func (f *Fleet) board(name string) (*board.Board, error) {
	if f.Boards == nil {
		return nil, fmt.Errorf("no boards configured")
	}
	return f.Boards.Pick(name)
}

// Strategy implements run.Machines: QEMU targets cross-build against the image's
// cached headers; a board builds natively or takes prebuilt modules, as runners.yaml
// says.
func (f *Fleet) Strategy(ctx context.Context, target, cacheDir string, strict bool) (build.Strategy, error) {
	if t, err := images.Lookup(target); err == nil {
		hdr, err := f.Builder.Headers(ctx, t)
		if err != nil {
			return nil, err
		}
		return &build.Cross{CacheDir: cacheDir, Strict: strict, Kbuild: build.Kbuild{Headers: hdr, Arch: t.ModuleBuild.Arch,
			CrossCompile: t.ModuleBuild.CrossCompile, CrossPackage: t.ModuleBuild.CrossPackage, Release: t.Kernel.Release}}, nil
	}
	b, err := f.board(target)
	if err != nil {
		return nil, err
	}
	if info := b.Info(); info.Build == "prebuilt" {
		return &build.Prebuilt{Dir: info.Prebuilt}, nil
	}
	return build.Native{}, nil
}

// Acquire implements run.Machines: boot a QEMU guest or connect to a board.
func (f *Fleet) Acquire(ctx context.Context, target, consoleLog string) (runner.Runner, error) {
	if t, err := images.Lookup(target); err == nil {
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
	if _, err := f.board(target); err != nil {
		return nil, err
	}
	s, err := f.Boards.Attach(ctx, target) // an idle board of the label, not the first one
	if err != nil {
		return nil, err
	}
	if err := f.checkBoard(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
