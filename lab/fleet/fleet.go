// Package fleet resolves a job's target names to machines through the runner kinds
// (providers) it holds: built-in QEMU targets (qemu.go), configured boards (boards.go)
// and any kind registered in Fleet.Kinds. It implements run.Machines.
package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/machine/board"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
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

	// Kinds are runner kinds configured outside the fleet (a lab of boards from
	// runners.yaml), asked after the built-in ones. Registering a new kind is one
	// append to this list where the fleet is made (cmd/kmodlab/run.go: newFleet).
	Kinds []Provider
}

// providers is the one list of runner kinds, in the order they are asked: the first
// that owns a name has it.
func (f *Fleet) providers() []Provider {
	ps := []Provider{qemuKind{f}}
	if f.Boards != nil {
		ps = append(ps, boardKind{f})
	}
	return append(ps, f.Kinds...)
}

// owner is the provider that owns name, nil when none does.
func (f *Fleet) owner(name string) Provider {
	for _, p := range f.providers() {
		if p.Owns(name) {
			return p
		}
	}
	return nil
}

func (f *Fleet) ownerOrErr(name string) (Provider, error) {
	if p := f.owner(name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("unknown target %q (known: %s)", name, f.Names())
}

// Known reports whether a target or board name (or board label) exists.
func (f *Fleet) Known(name string) bool { return f.owner(name) != nil }

// KindOf is the kind of the provider that owns name ("" when none does).
func (f *Fleet) KindOf(name string) runner.Kind {
	if p := f.owner(name); p != nil {
		return p.Kind()
	}
	return ""
}

// KindNames lists the kinds the fleet has, for flag checks.
func (f *Fleet) KindNames() []runner.Kind {
	var ks []runner.Kind
	for _, p := range f.providers() {
		ks = append(ks, p.Kind())
	}
	return ks
}

// Names lists everything a job can name.
func (f *Fleet) Names() string {
	var n []string
	for _, p := range f.providers() {
		n = append(n, p.Names()...)
	}
	return strings.Join(n, ", ")
}

// Describe implements run.Machines.
func (f *Fleet) Describe(target string) (runner.Info, error) {
	p, err := f.ownerOrErr(target)
	if err != nil {
		return runner.Info{}, err
	}
	return p.Describe(target)
}

// Strategy implements run.Machines: the owning kind says how its machines get modules.
func (f *Fleet) Strategy(ctx context.Context, target, cacheDir string, strict bool) (build.Strategy, error) {
	p, err := f.ownerOrErr(target)
	if err != nil {
		return nil, err
	}
	return p.Strategy(ctx, target, cacheDir, strict)
}

// Acquire implements run.Machines: boot a QEMU guest, connect to a board, or whatever
// the owning kind does.
func (f *Fleet) Acquire(ctx context.Context, target, consoleLog string) (runner.Runner, error) {
	p, err := f.ownerOrErr(target)
	if err != nil {
		return nil, err
	}
	return p.Acquire(ctx, target, consoleLog)
}

// Batch is the batch side of the kind that owns target (runner.Batch: cells run as
// whole jobs), nil for a kind whose machines the pipeline drives command by command.
func (f *Fleet) Batch(target string) runner.Batch {
	b, _ := f.owner(target).(runner.Batch)
	return b
}
