package board

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/logbuf"
	"github.com/kmodlab/kmodlab/lab/machine/remote"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"golang.org/x/crypto/ssh"
)

func (b *Board) remoteConfig() (remote.Config, error) {
	// The identity is the user's own key: refused, not changed, when others may read
	// it (OpenSSH refuses such a key too).
	if st, err := os.Stat(b.Identity); err == nil && st.Mode().Perm()&0o077 != 0 {
		return remote.Config{}, fmt.Errorf("board %s: identity %s is readable by others (mode %04o): chmod 600 it", b.Name, b.Identity, st.Mode().Perm())
	}
	key, err := os.ReadFile(b.Identity)
	if err != nil {
		return remote.Config{}, fmt.Errorf("board %s: identity: %w", b.Name, err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return remote.Config{}, fmt.Errorf("board %s: identity %s: %w", b.Name, b.Identity, err)
	}
	rc := remote.Config{Addr: b.Addr(), User: b.User, Signer: signer}
	pin, err := parsePin(b.HostKey)
	if err != nil {
		return rc, fmt.Errorf("board %s: host_key: %w", b.Name, err)
	}
	rc.HostKey, rc.HostKeyFingerprint, rc.HostKeyType = pin.key, pin.fingerprint, pin.keyType
	return rc, nil
}

// hostCommand runs power_on_command or hard_reset_command on this host. The board's
// name, address and port are in its environment ($KMODLAB_BOARD, $KMODLAB_BOARD_ADDRESS,
// $KMODLAB_BOARD_PORT) and, for a reset, why ($KMODLAB_RESET_REASON).
func (b *Board) hostCommand(ctx context.Context, field, command, reason string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), "KMODLAB_BOARD="+b.Name, "KMODLAB_BOARD_ADDRESS="+b.Address,
		fmt.Sprintf("KMODLAB_BOARD_PORT=%d", b.Port), "KMODLAB_RESET_REASON="+reason)
	// The command may start a long-lived process (a power switch daemon, a test's
	// emulator) that keeps the output pipe open: wait for the command, not the pipe.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("board %s: %s: %w: %s", b.Name, field, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// dial connects and runs uname -r. With wait, a refused or timed-out connection is
// retried with backoff (1 s doubling to 15 s) until ctx ends; a host key mismatch never is.
func (b *Board) dial(ctx context.Context, wait bool) (*remote.Client, string, error) {
	rc, err := b.remoteConfig()
	if err != nil {
		return nil, "", err
	}
	backoff := time.Second
	for {
		c, err := remote.Dial(ctx, rc)
		if err == nil {
			rel, rerr := c.Output(ctx, "uname -r")
			if rerr == nil {
				return c, strings.TrimSpace(rel), nil
			}
			c.Close()
			err = rerr
		}
		var hke *remote.HostKeyError
		if !wait || errors.As(err, &hke) || strings.Contains(err.Error(), "host key") {
			return nil, "", fmt.Errorf("board %s: %w", b.Name, err)
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("board %s: not reachable: %w (last: %v)", b.Name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

// Attach takes a slot of this board (waiting while all are busy), powers it on with
// power_on_command if one is configured, connects, checks the host key and starts
// following the kernel log. Everything after the slot wait has a deadline.
func (b *Board) Attach(ctx context.Context) (*Session, error) {
	sl, err := b.acquireSlot(ctx)
	if err != nil {
		return nil, err
	}
	return b.attachHeld(ctx, sl)
}

// attachHeld attaches with the slot already held; it releases the slot on failure.
func (b *Board) attachHeld(ctx context.Context, sl *slot) (*Session, error) {
	actx, cancel := context.WithTimeout(ctx, b.cfg.attachTimeout())
	defer cancel()
	wait := false
	if b.PowerOn != "" {
		if err := b.hostCommand(actx, "power_on_command", b.PowerOn, ""); err != nil {
			sl.release()
			return nil, err
		}
		wait = true // it is booting
	}
	c, rel, err := b.dial(actx, wait)
	if err != nil {
		sl.release()
		if actx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (attach deadline %s)", err, b.cfg.attachTimeout())
		}
		return nil, err
	}
	log, _ := logbuf.New(0, "")
	s := &Session{b: b, c: c, info: b.Info(), log: log, slot: sl}
	s.info.KernelRelease = rel
	fctx, stop := context.WithCancel(context.Background())
	s.stopFollow = stop
	s.followDone = make(chan struct{})
	go func() {
		defer close(s.followDone)
		// busybox dmesg has no --follow; /dev/kmsg gives every record, then new ones.
		c.Run(fctx, "dmesg --follow 2>/dev/null || exec cat /dev/kmsg", s.log, io.Discard)
	}()
	return s, nil
}

// Session is an attached board: the board implementation of runner.Runner and
// runner.Resetter.
type Session struct {
	b          *Board
	c          *remote.Client
	info       runner.Info
	log        *logbuf.Buffer
	stopFollow context.CancelFunc
	followDone chan struct{}
	slot       *slot // held for max_jobs until Close or Reset
	mu         sync.Mutex
	lost       bool
	closed     bool
}

var (
	_ runner.Runner   = (*Session)(nil)
	_ runner.Resetter = (*Session)(nil)
)

// Info implements runner.Runner.
func (s *Session) Info() runner.Info { return s.info }

// Run implements runner.Runner.
func (s *Session) Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error {
	err := s.c.Run(ctx, cmd, stdout, stderr)
	if errors.Is(err, remote.ErrConnectionLost) {
		s.mu.Lock()
		s.lost = true
		s.mu.Unlock()
	}
	return err
}

// Copy implements runner.Runner.
func (s *Session) Copy(ctx context.Context, local, remotePath string, mode os.FileMode) error {
	return s.c.Copy(ctx, local, remotePath, mode)
}

// Fetch implements runner.Runner.
func (s *Session) Fetch(ctx context.Context, remotePath string, w io.Writer) error {
	return s.c.Fetch(ctx, remotePath, w)
}

// Log implements runner.Runner: the followed kernel log.
func (s *Session) Log() runner.Log { return s.log }

// detach stops following the log and closes the SSH connection, keeping the slot. It
// reports whether the connection had been lost, and false if already detached.
func (s *Session) detach() (lost, ok bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, false
	}
	s.closed = true
	lost = s.lost
	s.mu.Unlock()
	s.stopFollow()
	s.c.Close()
	select {
	case <-s.followDone:
	case <-time.After(5 * time.Second):
	}
	s.log.Close()
	return lost, true
}

// Close implements runner.Runner. After a lost connection the board is reset (see
// Reset) before its slot is released, so no other job gets a board in that state.
func (s *Session) Close() error {
	lost, ok := s.detach()
	if !ok {
		return nil
	}
	defer s.slot.release()
	if lost && s.b.HardReset != "" {
		ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.resetTimeout()+2*time.Minute)
		defer cancel()
		return s.b.reset(ctx, "connection lost")
	}
	return nil
}

// Reset implements runner.Resetter: it power-cycles the board with hard_reset_command
// while still holding the board's slot (no other kmodlab process can attach to it
// mid-reset), waits with backoff until SSH answers again (bounded by ctx and the reset
// timeout), and then releases the slot. A board that has no hard_reset_command, or
// that does not come back, is quarantined with the reason, so later cells skip it
// instead of hanging on it; Reset then returns an error.
func (s *Session) Reset(ctx context.Context, reason string) error {
	if _, ok := s.detach(); !ok {
		return fmt.Errorf("board %s: reset after close", s.b.Name)
	}
	defer s.slot.release()
	return s.b.reset(ctx, reason)
}

// reset runs hard_reset_command and waits for the board; the caller holds a slot.
func (b *Board) reset(ctx context.Context, reason string) error {
	if b.HardReset == "" {
		p := fmt.Sprintf("needs a reset (%s) but has no hard_reset_command", reason)
		b.SetQuarantine(p)
		return fmt.Errorf("board %s: %s; quarantined", b.Name, p)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := b.hostCommand(cctx, "hard_reset_command", b.HardReset, reason)
	cancel()
	if err != nil {
		b.SetQuarantine(fmt.Sprintf("hard reset after %s failed: %v", reason, err))
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, b.cfg.resetTimeout())
	defer cancel()
	c, _, err := b.dial(wctx, true)
	if err != nil {
		b.SetQuarantine(fmt.Sprintf("did not come back after a hard reset (%s): %v", reason, err))
		return err
	}
	c.Close()
	return nil
}
