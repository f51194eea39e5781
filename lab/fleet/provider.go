package fleet

import (
	"context"
	"errors"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// Provider is one kind of runner: built-in QEMU targets (qemu.go), configured boards
// (boards.go), or a lab of boards. It owns a set of names, says what each is without
// starting it, says how its machines get kernel modules, and acquires a machine. The
// fleet asks the providers in order (Fleet.providers) which one owns a name and hands
// the call to it; nothing else in the lab tells kinds apart by their names.
//
// A kind whose machines take a cell only whole (a LAVA lab: it owns boot, console and
// power) also implements runner.Batch: the pipeline then hands it each cell as one job
// (Fleet.Batch) and never calls Acquire, which such a kind answers with ErrBatch.
type Provider interface {
	// Kind is the provider's kind, as reports and `kmodlab plan --kind` name it.
	Kind() runner.Kind
	// Owns reports whether name (a target, TARGET@LINE, a board or a board label) is
	// one of this provider's.
	Owns(name string) bool
	// Names lists the names a job can give, for error messages.
	Names() []string
	// Targets: Describe and Strategy. A Describe error means the name is the
	// provider's but cannot be used now (every board of a label quarantined).
	build.Targets
	// Acquire returns a ready machine; consoleLog, if set, receives its console.
	Acquire(ctx context.Context, name, consoleLog string) (runner.Runner, error)
}

// ErrBatch is Acquire's answer from a provider that runs cells only as whole jobs.
var ErrBatch = errors.New("this runner kind takes a cell only as a whole job")
