package qemu

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/machine/remote"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// Guest is a booted QEMU instance reachable over SSH: the QEMU implementation of
// runner.Runner.
type Guest struct {
	*Instance
	ssh      *remote.Client
	info     runner.Info
	BootTime time.Duration // QEMU start to first SSH command answered (restore-to-SSH when Restored)
}

var _ runner.Runner = (*Guest)(nil)

// Boot starts a guest and waits until a first SSH command has run. With snapshot boots
// on (the default, see SnapshotsEnabled) it resumes the image's saved machine state, or
// boots cold and saves one; a restore that fails is logged and falls back to a cold boot.
// On any error the instance is already closed.
func Boot(ctx context.Context, cfg Config, keyDir string, timeout time.Duration) (*Guest, error) {
	bin, accel, log, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	var snap *snapshot
	if SnapshotsEnabled(cfg) {
		s, err := snapshotFor(ctx, cfg, bin, accel)
		if err != nil {
			log.Warn("snapshot boots off for this machine", "target", cfg.Image.Target.Name, "why", err)
		} else {
			snap = &s
		}
	}
	if snap != nil && snap.exists() {
		g, err := bootRestore(ctx, cfg, bin, accel, log, *snap, keyDir, timeout)
		if err == nil {
			return g, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("snapshot restore failed: booting cold and saving a new state", "target", cfg.Image.Target.Name,
			"snapshot", snap.file(), "why", err.Error())
		snap.remove()
	}
	inst, err := startRetry(ctx, cfg, bin, accel, log, "")
	if err != nil {
		return nil, err
	}
	if err := inst.WaitReady(ctx, timeout); err != nil {
		inst.Close()
		return nil, fmt.Errorf("boot %s: %w", inst.Image.Target.Name, err)
	}
	if snap != nil && !snap.exists() {
		if err := inst.save(ctx, *snap); err != nil {
			log.Warn("saving the machine state failed: later boots stay cold", "target", cfg.Image.Target.Name, "why", err.Error())
		}
	}
	g, err := attach(ctx, inst, keyDir)
	if err != nil {
		inst.Close()
		return nil, err
	}
	return g, nil
}

func bootRestore(ctx context.Context, cfg Config, bin, accel string, log *slog.Logger, s snapshot, keyDir string, timeout time.Duration) (*Guest, error) {
	if timeout > restoreTimeout {
		timeout = restoreTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inst, err := restore(ctx, cfg, bin, accel, log, s)
	if err != nil {
		return nil, err
	}
	inst.con.WriteString(fmt.Sprintf("kmodlab: resumed the machine state saved at READY (%s)\n", filepath.Base(s.file())))
	g, err := attach(ctx, inst, keyDir)
	if err != nil {
		inst.Close()
		return nil, err
	}
	log.Info("machine restored", "target", cfg.Image.Target.Name, "seconds", g.BootTime.Seconds())
	return g, nil
}

// attach connects over SSH and runs the first command. It sets the guest's wall clock
// (a restored or paused guest's clock is stale) and mixes host entropy into its pool
// (restored guests would otherwise share one).
func attach(ctx context.Context, inst *Instance, keyDir string) (*Guest, error) {
	if err := privateKey(keyDir, inst.log); err != nil {
		return nil, err
	}
	signer, err := images.ClientKey(keyDir)
	if err != nil {
		return nil, err
	}
	c, err := remote.Dial(ctx, remote.Config{Addr: inst.Addr(), Signer: signer, HostKey: inst.Image.HostKey})
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", inst.Image.Target.Name, err)
	}
	first := fmt.Sprintf("date -s @%d >/dev/null 2>&1; echo %s > /dev/urandom; uname -r", time.Now().Unix(), randHex(32))
	rel, err := c.Output(ctx, first)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("boot %s: first command: %w", inst.Image.Target.Name, err)
	}
	info := Describe(inst.Image.Target)
	info.KernelRelease, info.Accel, info.ImageHash = strings.TrimSpace(rel), inst.Accel, inst.Image.Hash
	return &Guest{Instance: inst, ssh: c, BootTime: time.Since(inst.Started), info: info}, nil
}

// Describe says what a guest of target t is before it boots; a booted guest's Info
// adds what only the machine knows (the kernel release it reports, the accelerator,
// the image hash).
func Describe(t *images.Target) runner.Info {
	return runner.Info{Name: t.Name, Kind: runner.KindQEMU, Target: t.Name, GOARCH: t.GOARCH, GOARM: t.GOARM,
		KernelRelease: t.Kernel.Release, Build: "cross"}
}

// Info implements runner.Runner.
func (g *Guest) Info() runner.Info { return g.info }

// Run implements runner.Runner.
func (g *Guest) Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error {
	return g.ssh.Run(ctx, cmd, stdout, stderr)
}

// Copy implements runner.Runner.
func (g *Guest) Copy(ctx context.Context, local, remotePath string, mode os.FileMode) error {
	return g.ssh.Copy(ctx, local, remotePath, mode)
}

// Fetch implements runner.Runner.
func (g *Guest) Fetch(ctx context.Context, remotePath string, w io.Writer) error {
	return g.ssh.Fetch(ctx, remotePath, w)
}

// Log implements runner.Runner: the serial console.
func (g *Guest) Log() runner.Log { return g.Console() }

// SSHCommand is an OpenSSH command line that reaches this guest by hand.
func (g *Guest) SSHCommand(keyDir, knownHosts string) string {
	return fmt.Sprintf("ssh -i %s/id_ed25519 -o UserKnownHostsFile=%s -p %d root@127.0.0.1", keyDir, knownHosts, g.SSHPort)
}

// Close implements runner.Runner: the SSH connection, then QEMU.
func (g *Guest) Close() error {
	if g.ssh != nil {
		g.ssh.Close()
	}
	return g.Instance.Close()
}
