package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/remote"
	"github.com/kmodlab/kmodlab/lab/runner"
)

// Guest is a booted QEMU instance reachable over SSH: the QEMU implementation of
// runner.Runner.
type Guest struct {
	*Instance
	ssh      *remote.Client
	info     runner.Info
	BootTime time.Duration // QEMU start to first SSH command answered
}

var _ runner.Runner = (*Guest)(nil)

// Boot starts a guest and waits until a first SSH command has run. On any error the
// instance is already closed.
func Boot(ctx context.Context, cfg Config, keyDir string, timeout time.Duration) (*Guest, error) {
	inst, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	g, err := attach(ctx, inst, keyDir, timeout)
	if err != nil {
		inst.Close()
		return nil, err
	}
	return g, nil
}

func attach(ctx context.Context, inst *Instance, keyDir string, timeout time.Duration) (*Guest, error) {
	if err := inst.WaitReady(ctx, timeout); err != nil {
		return nil, fmt.Errorf("boot %s: %w", inst.Image.Target.Name, err)
	}
	signer, err := images.ClientKey(keyDir)
	if err != nil {
		return nil, err
	}
	c, err := remote.Dial(ctx, remote.Config{Addr: inst.Addr(), Signer: signer, HostKey: inst.Image.HostKey})
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", inst.Image.Target.Name, err)
	}
	rel, err := c.Output(ctx, "uname -r")
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("boot %s: first command: %w", inst.Image.Target.Name, err)
	}
	t := inst.Image.Target
	g := &Guest{Instance: inst, ssh: c, BootTime: time.Since(inst.Started), info: runner.Info{
		Name: t.Name, Kind: "qemu", Target: t.Name, GOARCH: t.GOARCH, GOARM: t.GOARM,
		KernelRelease: strings.TrimSpace(rel), Accel: inst.Accel, Build: "cross", ImageHash: inst.Image.Hash}}
	return g, nil
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
