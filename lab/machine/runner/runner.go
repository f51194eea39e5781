// Package runner defines the one interface every machine the lab runs jobs on
// implements: a QEMU guest it booted (lab/machine/qemu) or a board it reaches over SSH
// (lab/machine/board). Nothing above this interface knows which one it has.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Kind is a family of machines: each is one provider in lab/fleet, which owns its
// names, describes them and acquires their machines.
type Kind string

// The kinds of machine the lab has.
const (
	KindQEMU  Kind = "qemu"  // a built-in QEMU target the lab boots (lab/machine/qemu)
	KindBoard Kind = "board" // a configured board reached over SSH (lab/machine/board)
)

// Info describes the machine behind a Runner.
type Info struct {
	Name          string `json:"name"`   // target or board name
	Kind          Kind   `json:"kind"`   // which provider has it
	Target        string `json:"target"` // image target (qemu) or the board's arch label
	GOARCH        string `json:"goarch"` // for cross-building Go tools
	GOARM         string `json:"goarm,omitempty"`
	KernelRelease string `json:"kernel_release"` // uname -r
	Accel         string `json:"accel,omitempty"`
	Build         string `json:"build"` // how modules are built: "cross", "native" or "prebuilt"
	Prebuilt      string `json:"prebuilt,omitempty"`
	ImageHash     string `json:"image_hash,omitempty"`
}

// Log is a growing text the runner collects on its own: the serial console of a guest,
// or a board's `dmesg --follow` stream. Len is an offset to pass to Since later.
type Log interface {
	Len() int
	Since(offset int) string
}

// Runner is one machine that runs a job's commands.
type Runner interface {
	// Info says what the machine is.
	Info() Info
	// Run runs a shell command line, streaming stdout and stderr. A non-zero exit is a
	// *remote.ExitError; a lost connection wraps remote.ErrConnectionLost; ctx ends it.
	Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error
	// Copy puts a local file on the machine with the given mode.
	Copy(ctx context.Context, local, remotePath string, mode os.FileMode) error
	// Fetch copies a file from the machine into w.
	Fetch(ctx context.Context, remotePath string, w io.Writer) error
	// Log is the kernel's own output as the runner sees it, collected continuously.
	Log() Log
	// Close releases the machine: a guest is shut down, a board's sessions are closed.
	Close() error
}

// Output runs cmd and returns its standard output.
func Output(ctx context.Context, r Runner, cmd string) (string, error) {
	var out, errb strings.Builder
	err := r.Run(ctx, cmd, &out, &errb)
	if err != nil && errb.Len() > 0 {
		return out.String(), &CmdError{Err: err, Stderr: strings.TrimSpace(errb.String())}
	}
	return out.String(), err
}

// CmdError carries a failed command's stderr.
type CmdError struct {
	Err    error
	Stderr string
}

func (e *CmdError) Error() string { return e.Err.Error() + ": " + e.Stderr }
func (e *CmdError) Unwrap() error { return e.Err }

// Resetter is a machine the lab can recover in place (a board with a
// hard_reset_command). The pipeline calls Reset instead of Close on a machine that a cell
// left hung, crashed or unreachable. Reset power-cycles it while holding the machine's
// slot lock, waits with backoff (bounded by ctx) until it answers again, and then
// releases it as Close does. A machine without a way to reset is simply closed (a QEMU
// guest: the next cell boots a fresh one).
type Resetter interface {
	Reset(ctx context.Context, reason string) error
}

// Quote quotes s for the remote POSIX shell, so it arrives as one word whatever it holds.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ExitError is a command that ran on the machine and exited non-zero.
type ExitError struct {
	Cmd    string
	Status int
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("%q killed by signal %s", e.Cmd, e.Signal)
	}
	return fmt.Sprintf("%q exited with status %d", e.Cmd, e.Status)
}

// ErrConnectionLost is wrapped by Run's error when the connection to the machine dies
// under a running command.
var ErrConnectionLost = errors.New("ssh connection lost")

// Diagnoser is a machine that can say more about a hang: a QEMU guest asks its kernel
// for the blocked tasks and all task stacks (sysrq w and t) through its monitor, as
// syzkaller's Diagnose does. The pipeline saves the answer with a HUNG cell's logs.
type Diagnoser interface {
	Diagnose(ctx context.Context) (string, error)
}

// Panicker is a machine that reports its kernel's panic on its own channel (QEMU's
// pvpanic device: the GUEST_PANICKED event), which the crash watcher trusts even when
// the console has not printed the panic yet.
type Panicker interface {
	Panicked() bool
}
