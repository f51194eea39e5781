package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/machine/board"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/run"
	"github.com/spf13/cobra"
)

var flagRunners string

// newFleet builds the fleet: built-in QEMU targets plus the boards of runners.yaml.
func newFleet(accel string, bootTimeout time.Duration) (*fleet.Fleet, error) {
	f := &fleet.Fleet{Builder: builder(), Accel: accel, BootTimeout: bootTimeout}
	file := flagRunners
	if file == "" {
		file = board.DefaultFile()
		if _, err := os.Stat(file); err != nil {
			return f, nil
		}
	}
	cfg, err := board.Load(file, filepath.Join(f.Builder.CacheDir, "state"))
	if err != nil {
		return nil, err
	}
	f.Boards = cfg
	if err := addLava(f, file); err != nil { // lava.go
		return nil, err
	}
	return f, nil
}

// parseKV reads k=v pairs from repeated flags; with lists, one flag may hold a comma
// list of them (--pin image=…,module=…). Without, the value is everything after the
// first '=' (--set may hold commas and '=').
func parseKV(items []string, flag string, lists bool) (map[string]string, error) {
	m := map[string]string{}
	for _, it := range items {
		kvs := []string{it}
		if lists {
			kvs = strings.Split(it, ",")
		}
		for _, kv := range kvs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("%s %q: want key=value", flag, kv)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("%s %s: given twice", flag, k)
			}
			m[k] = v
		}
	}
	return m, nil
}

// parseSets reads --set overrides and checks each names a variable the job has, so a
// typo fails before anything is built.
func parseSets(j *job.Job, sets []string) (map[string]string, error) {
	vars, err := parseKV(sets, "--set", false)
	if err != nil {
		return nil, err
	}
	if err := j.CheckSet(vars); err != nil {
		return nil, err
	}
	return vars, nil
}

func runCmd() *cobra.Command {
	var (
		cells       []string
		targets     []string
		seed        int64
		out         string
		parallel    int
		sets        []string
		pins        []string
		accel       string
		bootTimeout time.Duration
		noCanary    bool
		strict      bool
		repeat      int
		full        bool
		noSnapshot  bool
		format      string
		infraExit   int
		lavaRoutes  []string
	)
	c := &cobra.Command{
		Use:   "run JOB",
		Short: "Run a job: every cell (target x module parameters), with verdicts and reports",
		Long: `Run builds the job's module and tools for each target, boots the QEMU guest (or
attaches the board), deploys over SSH, runs the setup and stress steps, collects the
kernel log, checks its CRC traces and the stress reports, and prints a verdict matrix.

Stress stops once a cell's verdict is sure (a confirmed divergence or mismatch), and a
clean cell's once it has checked expect.min_evidence × expect.evidence_factor; a step's
duration is its cap. --full runs every stress step to its end for complete counts. --repeat N runs each cell N times and
reports rates; a cell meets its expectation when every repeat does (expect.min_rate
lowers that for flaky bugs).

Exit codes: 0 every cell as expected, 1 a cell's verdict differs from its expectation,
2 an infrastructure error (boot, SSH, build, timeout); --infra-exit 125 makes that
git bisect run's "skip" (docs/bisect.md).`,
		Example: `  kmodlab run jobs/highmem-coherency.yaml
  kmodlab run jobs/highmem-coherency.yaml --cell armv7-lpae/atomic --seed 42
  kmodlab run jobs/highmem-coherency.yaml --set stress=5s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := newFleet(accel, bootTimeout)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			f.NoSnapshot = noSnapshot
			j, err := job.Load(args[0], f.Known)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			if err := j.Retarget(targets, f.Known); err != nil {
				return err
			}
			if b := time.Duration(j.Timeouts.Boot); b > 0 && !cmd.Flags().Changed("boot-timeout") {
				f.BootTimeout = b // the job's timeouts.boot; --boot-timeout overrides it
			}
			if err := f.CheckGuest(cmd.Context(), j); err != nil {
				return &exitError{report.ExitInfra, err}
			}
			if err := f.CheckOwnKernels(j); err != nil {
				return &exitError{report.ExitInfra, err}
			}
			vars, err := parseSets(j, sets)
			if err != nil {
				return err
			}
			pinned, err := parseKV(pins, "--pin", true)
			if err != nil {
				return err
			}
			sel, err := job.Select(j.Cells(), cells)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano() % 1000000
			}
			if out == "" {
				out = filepath.Join("results", time.Now().Format("20060102-150405"))
			}
			if repeat < 1 {
				return fmt.Errorf("--repeat %d: want 1 or more", repeat)
			}
			if parallel == 0 {
				parallel = run.DefaultParallel()
			}
			if format != "text" && format != "ktap" {
				return fmt.Errorf("--format %q: want text or ktap", format)
			}
			if infraExit < 0 || infraExit > 255 {
				return fmt.Errorf("--infra-exit %d: want an exit code 0..255 (125 is git bisect run's skip)", infraExit)
			}
			fmt.Fprintf(stderr, "kmodlab: %s: %d cells, seed %d, %d in parallel, results in %s\n", j.Name, len(sel), seed, parallel, out)
			machines, err := lavaMachines(cmd.Context(), f, j.Name, lavaRoutes, sel)
			if err != nil {
				return &exitError{infraExit, err}
			}
			rep, err := run.Run(cmd.Context(), run.Options{Job: j, Cells: sel, Seed: seed, Out: out, Parallel: parallel,
				Vars: vars, Pins: pinned, Machines: machines, CacheDir: f.Builder.CacheDir, Canary: !noCanary,
				Version: version, Progress: stderr, StrictW1: strict, Repeat: repeat, Full: full})
			if err != nil {
				if rep != nil && len(rep.Cells) > 0 {
					// The cells ran; only their reports could not be written (a disk
					// that filled meanwhile): the verdicts still go to the terminal.
					fmt.Fprintln(stdout)
					fmt.Fprint(stdout, rep.Matrix())
					fmt.Fprint(stdout, rep.Details())
				}
				return &exitError{infraExit, err}
			}
			if format == "ktap" {
				rep.KTAP(stdout)
			} else {
				fmt.Fprintln(stdout)
				fmt.Fprint(stdout, rep.Matrix())
				fmt.Fprint(stdout, rep.Details())
				fmt.Fprintf(stdout, "\nreports: %s/{results.json,junit.xml,summary.md,index.html,results.ktap}\n", out)
			}
			if code := rep.Code(); code != 0 {
				if code == report.ExitInfra {
					code = infraExit
				}
				return &exitError{code, fmt.Errorf("exit %d: %s", code, map[int]string{1: "a cell missed its expectation", 2: "infrastructure error"}[code])}
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&targets, "target", nil, "run the job's cells on these targets instead of its own (e.g. --target x86_64@trixie+debug)")
	c.Flags().StringArrayVar(&lavaRoutes, "lava", nil, "run a target's cells as LAVA jobs on a lava: entry of runners.yaml, TARGET=ENTRY (repeatable)")
	c.Flags().StringSliceVar(&cells, "cell", nil, "run only these cells (target/value, globs allowed)")
	c.Flags().Int64Var(&seed, "seed", 0, "seed for the stress tools (default: random, printed)")
	c.Flags().StringVar(&out, "out", "", "results directory (default results/<timestamp>)")
	c.Flags().IntVarP(&parallel, "parallel", "j", 0, "targets run at once (default: what cores and memory allow)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override one of the job's vars (repeatable; the value may hold commas; it reaches commands shell-quoted), e.g. --set stress=5s")
	c.Flags().StringArrayVar(&pins, "pin", nil, "hashes a replay must match, e.g. image=…,module=…")
	c.Flags().StringVar(&accel, "accel", "auto", "kvm, tcg or auto")
	c.Flags().DurationVar(&bootTimeout, "boot-timeout", 4*time.Minute, "boot timeout per guest (overrides the job's timeouts.boot)")
	c.Flags().BoolVar(&noCanary, "no-canary", false, "skip the per-target canary")
	c.Flags().BoolVar(&strict, "strict", false, "fail module builds that warn under W=1")
	c.Flags().IntVar(&repeat, "repeat", 1, "run each cell N times (a fresh module load each time) and report rates")
	c.Flags().BoolVar(&full, "full", false, "run every stress step to its end, even once the verdict is sure")
	c.Flags().StringVar(&format, "format", "text", "stdout: text (the matrix and details) or ktap (the run as KTAP, also written to results.ktap)")
	c.Flags().IntVar(&infraExit, "infra-exit", report.ExitInfra, "exit code for an infrastructure error (125 makes plain `git bisect run` skip the revision)")
	c.Flags().BoolVar(&noSnapshot, "no-snapshot", false, "boot every QEMU machine cold instead of restoring its image's saved state (also: KMODLAB_NO_SNAPSHOT=1)")
	c.PersistentFlags().StringVar(&flagRunners, "runners", "", "runners.yaml (default $XDG_CONFIG_HOME/kmodlab/runners.yaml)")
	return c
}
