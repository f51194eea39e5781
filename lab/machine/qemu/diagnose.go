package qemu

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Diagnose asks a hung guest's kernel what its tasks are doing, as syzkaller's Diagnose
// does, and returns the console output that followed. It needs no SSH: through QMP it
// sends a break on the serial line and then the magic SysRq key on the console's input
// (the kernel takes the character after a break as a SysRq command; the command line
// has sysrq_always_enabled). It raises the console log level (SysRq 8) so the task
// dumps reach the console, dumps the blocked tasks (w) and all tasks (t), and puts the
// log level back (5, as booted).
func (i *Instance) Diagnose(ctx context.Context) (string, error) {
	if i.raw == nil || i.stdin == nil {
		return "", errors.New("diagnose: no QMP monitor")
	}
	select {
	case <-i.exited:
		return "", errors.New("diagnose: qemu has exited")
	default:
	}
	off := i.con.Len()
	for _, step := range []struct {
		key   byte
		quiet time.Duration
		max   time.Duration
	}{{'8', 100 * time.Millisecond, time.Second}, {'w', time.Second, 15 * time.Second}, {'t', time.Second, 30 * time.Second}, {'5', 0, 0}} {
		if err := i.sysrq(step.key); err != nil {
			return i.con.Since(off), fmt.Errorf("diagnose: sysrq %c: %w", step.key, err)
		}
		if step.max > 0 {
			i.con.WaitQuiet(ctx, off, step.quiet, step.max)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return i.con.Since(off), ctx.Err()
}

// sysrq sends a break on the serial console, then key.
func (i *Instance) sysrq(key byte) error {
	if err := i.raw.ChardevSendBreak("con0"); err != nil {
		return err
	}
	_, err := i.stdin.Write([]byte{key})
	return err
}
