package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/machine/qemu"
	"github.com/kmodlab/kmodlab/lab/machine/remote"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

func bootCmd() *cobra.Command {
	var (
		keep    bool
		accel   string
		timeout time.Duration
		conLog  string
		add     images.Additions
		noSnap  bool
		// ownKernel is a kernel build directory to boot instead of the target's kernel.
		ownKernel string
	)
	c := &cobra.Command{
		Use:   "boot TARGET[@LINE][+FRAGMENT...] [--own-kernel DIR] [--package P] [--module M] [--keep | -- CMD [ARGS...]]",
		Short: "Boot a fresh guest, run CMD over SSH, print its output, shut down, exit with CMD's status",
		Example: `  kmodlab boot armv7-lpae -- grep HighTotal /proc/meminfo
  kmodlab boot armv7-lpae@sid -- uname -r
  kmodlab boot x86_64 --package e2fsprogs --module loop -- 'modprobe loop && mkfs.ext4 -V'
  kmodlab boot i386-pae --keep
  kmodlab boot armv7-lpae --own-kernel ~/linux/out-arm -- uname -r
  kmodlab boot armv7-lpae@trixie+detect -- uname -r`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := images.Lookup(args[0])
			if err != nil {
				return err
			}
			command := args[1:]
			if len(command) == 0 && !keep {
				return fmt.Errorf("give a command after -- or --keep")
			}
			ctx := cmd.Context()
			b := builder()
			if ownKernel != "" {
				if err := images.CheckOwnKernel(t, ownKernel); err != nil {
					return err
				}
				abs, _ := filepath.Abs(ownKernel)
				b.OwnKernels = map[string]string{t.Base: abs}
				if t, err = images.Lookup(t.Base + "+" + images.OwnSuffix); err != nil {
					return err
				}
			}
			img, err := b.BuildWith(ctx, t, add)
			if err != nil {
				return err
			}
			g, err := qemu.Boot(ctx, qemu.Config{Image: img, Accel: accel, ConsoleLog: conLog, NoSnapshot: noSnap}, b.KeyDir(), timeout)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			defer g.Close()
			fmt.Fprintf(stderr, "kmodlab: %s up in %.1fs (%s, kernel %s)\n", t.Name, g.BootTime.Seconds(), g.Accel, g.Info().KernelRelease)
			if keep {
				kh, err := writeKnownHosts(b.KeyDir(), g.Addr(), ssh.MarshalAuthorizedKey(img.HostKey))
				if err != nil {
					return err
				}
				defer os.Remove(kh)
				fmt.Fprintf(stdout, "%s\n", g.SSHCommand(b.KeyDir(), kh))
				fmt.Fprintln(stderr, "kmodlab: Ctrl-C shuts the guest down")
				select {
				case <-ctx.Done():
				case <-g.Exited():
					fmt.Fprintln(stderr, "kmodlab: the guest powered off")
				}
				return nil
			}
			err = g.Run(ctx, shellJoin(command), stdout, stderr)
			if ee, ok := err.(*remote.ExitError); ok {
				return &exitError{ee.Status, err}
			}
			return err
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "stay up and print the ssh command line; Ctrl-C shuts down")
	c.Flags().BoolVar(&noSnap, "no-snapshot", false, "boot cold instead of restoring the image's saved machine state")
	c.Flags().StringVar(&accel, "accel", "auto", "kvm, tcg or auto (kvm only when really usable)")
	c.Flags().DurationVar(&timeout, "boot-timeout", 4*time.Minute, "how long the guest may take to answer SSH")
	c.Flags().StringVar(&conLog, "console-log", "", "also write the serial console to this file")
	c.Flags().StringSliceVar(&add.Packages, "package", nil, "add a Debian package of the target's suite (with its libraries); repeatable")
	c.Flags().StringSliceVar(&add.Modules, "module", nil, "add an in-tree module of the target's kernel (modprobe-able); repeatable")
	c.Flags().StringVar(&ownKernel, "own-kernel", "", "boot your own kernel build (a kbuild output directory with .config, Module.symvers and the boot image) as TARGET+own")
	return c
}

// shellJoin quotes args for the remote shell so they arrive as given.
func shellJoin(args []string) string {
	if len(args) == 1 {
		return args[0] // one argument: a command line the user already wrote for a shell
	}
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@%+") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
