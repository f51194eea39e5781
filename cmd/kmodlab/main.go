// Command kmodlab is a QEMU-based, cross-architecture CI lab for Linux kernel modules:
// it boots ARMv7 LPAE, i386 PAE, arm64 and x86_64 guests (or reaches boards over SSH), builds
// and deploys a module and its userspace, runs stress jobs and says, per target and per
// module mode, whether data diverged between threads, with the evidence.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kmodlab/kmodlab/internal/cleanup"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/spf13/cobra"
)

// version is set by the Makefile (-ldflags -X main.version=...).
var version = "dev"

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

var (
	flagCache   string
	flagVerbose bool
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go handleSignals(sigs, cancel, os.Exit)
	root := &cobra.Command{
		Use:           "kmodlab",
		Short:         "A QEMU-based, cross-architecture CI lab for Linux kernel modules",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			lvl := slog.LevelInfo
			if flagVerbose {
				lvl = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})))
		},
	}
	root.PersistentFlags().StringVar(&flagCache, "cache", "", "cache directory (default $XDG_CACHE_HOME/kmodlab)")
	root.PersistentFlags().BoolVarP(&flagVerbose, "verbose", "v", false, "debug logging")
	root.AddCommand(versionCmd(), imagesCmd(), bootCmd(), buildCmd(), runCmd(), bisectCmd(), traceCmd(), benchCmd(), runnersCmd(), planCmd(), mergeCmd(), lavaCmd())
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(stderr, "kmodlab:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(report.ExitInfra)
}

// handleSignals: the first Ctrl-C (or SIGTERM) cancels the context, so the running
// command shuts its guests down, writes its reports and exits 2; a second one exits at
// once, for when that clean-up itself hangs, after the quick part of it
// (internal/cleanup: QEMUs killed, their temp directories removed).
func handleSignals(sigs <-chan os.Signal, cancel context.CancelFunc, exit func(int)) {
	s := <-sigs
	fmt.Fprintf(stderr, "kmodlab: %s: cleaning up (again to exit at once)\n", s)
	cancel()
	<-sigs
	n := cleanup.Now()
	fmt.Fprintf(stderr, "kmodlab: exiting at once (killed %d machine(s) and removed their temp directories; reports not written)\n", n)
	exit(report.ExitInfra)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kmodlab's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(stdout, "kmodlab", version)
		},
	}
}

// group is a command that only gathers its subcommands (kmodlab images build, kmodlab
// trace analyze, …), each made by a function of its own.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	c.AddCommand(subs...)
	return c
}
