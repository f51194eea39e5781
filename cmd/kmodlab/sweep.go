package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/sweep"
	"github.com/spf13/cobra"
)

func sweepCmd() *cobra.Command {
	var (
		targets, suites, kernels []string
		rng, out                 string
		parallel                 int
		strict, list             bool
	)
	c := &cobra.Command{
		Use:   "sweep JOB",
		Short: "Build the job's modules against every kernel headers package the targets' suites serve (no guest boots)",
		Long: `Sweep is a compile-only check: the job's modules are built (W=1, cross for ARM) against
every kernel headers package a target line's suite serves (with its -updates and
-security, and -backports where the archive has them), or the kernels --kernel and
--range pick. Nothing boots. Headers are cached like a run's.

It prints a table of kernel × target: built (with the build's seconds), the number of
the module's own W=1 warnings, or FAILED with the first compiler error at its line,
and writes results.json, junit.xml, summary.md, index.html and plan.json to --out
(kmodlab merge --plan OUT/plan.json takes it).

A target names all of its lines (armv7-lpae: bookworm, trixie and sid); TARGET@LINE
one. Default: every built-in target and line.

Exit codes: 0 every kernel as the job expects (expect: build-fails for a cell pattern
marks the lines it matches), 1 a kernel that did not build (or built where the job
expects it not to), 2 the lab could not fetch headers or run the compiler.`,
		Example: `  kmodlab build sweep examples/rapiddisk/job.yaml
  kmodlab build sweep examples/byom/job.yaml --target x86_64@trixie --range 6.12.111+deb13..6.12.118+deb13
  kmodlab build sweep jobs/highmem-coherency.yaml --target armv7-lpae --kernel '6.1.0-5*' --strict`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := job.Load(args[0], nil)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			lines, err := sweepTargets(targets)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			if out == "" {
				out = filepath.Join("results", "sweep-"+time.Now().Format("20060102-150405"))
			}
			if parallel < 1 {
				parallel = min(runtime.NumCPU(), 2)
			}
			o := sweep.Options{Job: j, Builder: builder(), Targets: lines, Suites: suites, Kernels: kernels, Range: rng,
				Parallel: parallel, Strict: strict, Out: out, Version: version, Progress: stderr}
			t0 := time.Now()
			items, notes, err := sweep.Kernels(cmd.Context(), o)
			for _, n := range notes {
				fmt.Fprintln(stderr, "kmodlab: note:", n)
			}
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			if len(items) == 0 {
				return &exitError{report.ExitInfra, fmt.Errorf("no kernel matches (targets %s)", strings.Join(targets, ","))}
			}
			listed := time.Since(t0)
			if list {
				for _, it := range items {
					fmt.Fprintf(stdout, "%-11s %-30s %-22s %s\n", it.Base, it.Kernel.Release, it.Kernel.Version, it.Kernel.Suite)
				}
				return nil
			}
			fmt.Fprintf(stderr, "kmodlab: sweep %s: %d kernel × target builds, %d at once, results in %s\n", j.Name, len(items), parallel, out)
			res, err := sweep.Run(cmd.Context(), o, items)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			fmt.Fprintln(stdout)
			fmt.Fprint(stdout, sweep.Table(res.Run))
			fmt.Fprint(stdout, sweepSummary(res, listed))
			fmt.Fprintf(stdout, "reports: %s/{results.json,junit.xml,summary.md,index.html,plan.json}\n", out)
			if code := res.Run.Code(); code != 0 {
				return &exitError{code, fmt.Errorf("exit %d: %s", code, map[int]string{1: "a kernel did not build as the job expects", 2: "infrastructure error"}[code])}
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&targets, "target", nil, "TARGET (all its lines) or TARGET@LINE, repeatable (default: every built-in target and line)")
	c.Flags().StringSliceVar(&suites, "suite", nil, "read these suites instead of each line's own and its -backports")
	c.Flags().StringArrayVar(&kernels, "kernel", nil, "only kernels whose release or ABI matches this glob (repeatable), e.g. '6.1.0-5*'")
	c.Flags().StringVar(&rng, "range", "", "only kernel ABIs in FROM..TO, Debian version order (6.1.0-53..6.1.0-57, 6.12.111+deb13..)")
	c.Flags().IntVarP(&parallel, "parallel", "j", 0, "kernels built at once (default: cores, at most 2)")
	c.Flags().BoolVar(&strict, "strict", false, "the modules' own W=1 warnings fail the build (also: the job's build.strict)")
	c.Flags().BoolVar(&list, "list", false, "list the kernels the sweep would build, and stop")
	c.Flags().StringVar(&out, "out", "", "results directory (default results/sweep-<timestamp>)")
	return c
}

// sweepTargets resolves --target names to target lines (a bare target: all its lines).
func sweepTargets(names []string) ([]*images.Target, error) {
	if len(names) == 0 {
		names = images.Names()
	}
	var out []*images.Target
	for _, n := range names {
		t, err := images.Lookup(n)
		if err != nil {
			return nil, err
		}
		if strings.Contains(n, "@") {
			out = append(out, t)
			continue
		}
		for _, l := range t.LineNames() {
			lt, err := t.WithLine(l)
			if err != nil {
				return nil, err
			}
			out = append(out, lt)
		}
	}
	return out, nil
}

// sweepSummary is the numbers under the table: kernels, outcomes, wall time, and how
// long the builds took.
func sweepSummary(res *sweep.Result, listed time.Duration) string {
	r := res.Run
	abis := map[string]bool{}
	count := map[verdict.Verdict]int{}
	var builds, cpus []float64
	headers := 0.0
	for _, c := range r.Cells {
		abis[c.Target] = true
		v := c.Verdict
		if v == verdict.Built && c.Build != nil && c.Build.Warnings > 0 {
			v = "built with warnings"
		}
		count[v]++
		if c.Build != nil && c.Build.Seconds > 0 {
			builds = append(builds, c.Build.Seconds)
			cpus = append(cpus, c.Build.CPUSeconds)
		}
		headers += c.Timings["headers"]
	}
	sort.Float64s(builds)
	sort.Float64s(cpus)
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d kernels (%d kernel × target builds): %d built, %d built with warnings (%d W=1 warnings), %d %s, %d %s\n",
		len(abis), len(r.Cells), count[verdict.Built], count["built with warnings"], r.Warnings(),
		count[verdict.BuildFailed], verdict.BuildFailed, count[verdict.Infra], verdict.Infra)
	per := res.Wall.Seconds() / float64(max(len(r.Cells), 1))
	fmt.Fprintf(&b, "wall %.1f s (%.2f s per kernel × target; listing the kernels %.1f s); headers fetched %d (%.1f s in all, cached ones included)\n",
		res.Wall.Seconds(), per, listed.Seconds(), res.Fetched, headers)
	if n := len(builds); n > 0 {
		sum := 0.0
		for _, s := range builds {
			sum += s
		}
		fmt.Fprintf(&b, "build (make, per kernel × target): median %.2f s, mean %.2f s, min %.2f s, max %.2f s\n",
			builds[n/2], sum/float64(n), builds[0], builds[n-1])
		cpu := 0.0
		for _, s := range cpus {
			cpu += s
		}
		fmt.Fprintf(&b, "build CPU time (make and the compilers): median %.2f s, mean %.2f s, %.1f s in all; host load average %s\n",
			cpus[n/2], cpu/float64(n), cpu, loadavg())
	}
	return b.String()
}

// loadavg is the host's 1-minute load average and its cores ("6.18 on 2 cores"), for
// reading the times above.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%s on %d cores", f[0], runtime.NumCPU())
}
