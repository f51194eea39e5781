package main

import (
	"context"
	"fmt"

	"github.com/kmodlab/kmodlab/lab/machine/board"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/spf13/cobra"
)

func runnersCmd() *cobra.Command {
	c := group("runners", "Hardware runners (boards over SSH) from runners.yaml", runnersCheckCmd(), runnersListCmd())
	c.PersistentFlags().StringVar(&flagRunners, "runners", "", "runners.yaml (default $XDG_CONFIG_HOME/kmodlab/runners.yaml)")
	return c
}

func runnersCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [NAME...]",
		Short: "Health-check boards: reachable, host key, arch, kernel, headers, memory; quarantine failures",
		RunE: func(cmd *cobra.Command, args []string) error {
			return checkRunners(cmd.Context(), args)
		},
	}
}

func runnersListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List configured boards and their quarantine state",
		RunE: func(cmd *cobra.Command, args []string) error {
			boards, err := configuredBoards()
			if err != nil || boards == nil {
				fmt.Fprintln(stdout, "no boards configured")
				return err
			}
			for _, b := range boards.Boards {
				q := b.Quarantined()
				if q == "" {
					q = "available"
				}
				fmt.Fprintf(stdout, "%-14s %s:%d arch=%s build=%s labels=%v  %s\n", b.Name, b.Address, b.Port, b.Arch, b.Build, b.Labels, q)
			}
			return nil
		},
	}
}

// checkRunners health-checks the lava: entries and boards named (all without names),
// prints their health and quarantines the boards that fail.
func checkRunners(ctx context.Context, names []string) error {
	boards, err := configuredBoards()
	if err != nil {
		return err
	}
	if boards == nil {
		return fmt.Errorf("no runners.yaml (give --runners FILE)")
	}
	bad := checkLabs(ctx, names) // lava.go
	for _, b := range boards.Boards {
		if len(names) > 0 && !contains(names, b.Name) {
			continue
		}
		h := b.Check(ctx)
		if h.Busy {
			fmt.Fprintf(stdout, "%-14s busy  %s\n", b.Name, h.Problem)
			continue
		}
		if h.OK {
			fmt.Fprintf(stdout, "%-14s ok    %s %s headers=%v mem_available=%d kB\n", b.Name, h.Machine, h.Kernel, h.Headers, h.MemFreeKB)
		} else {
			bad++
			fmt.Fprintf(stdout, "%-14s FAIL  %s (quarantined)\n", b.Name, h.Problem)
		}
	}
	if bad > 0 {
		return &exitError{report.ExitMismatch, fmt.Errorf("%d runner(s) failed the health check", bad)}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// configuredBoards is runners.yaml's boards, nil when there is no runners.yaml.
func configuredBoards() (*board.Config, error) {
	f, err := newFleet("auto", 0)
	if err != nil {
		return nil, err
	}
	return f.Boards, nil
}
