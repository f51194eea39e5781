package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/machine/lava"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/spf13/cobra"
)

// shard is one entry of `kmodlab plan`'s output: a GitHub Actions matrix entry. Args
// are the `kmodlab run` arguments that select exactly Cells.
type shard struct {
	Name  string      `json:"name"`           // safe for artifact names: [A-Za-z0-9._-]
	Kind  runner.Kind `json:"kind"`           // the runner kind of the shard's target: "qemu", "board", …
	Args  []string    `json:"args"`           // e.g. ["--cell", "x86_64/atomic", "--cell", "x86_64/kmap"]
	Cells []string    `json:"cells"`          // the cell IDs the shard reports
	Seed  *int64      `json:"seed,omitempty"` // set when the plan fixes one seed for every shard
	// InFlight is, for a LAVA shard, how many of its cells are in the lab at once (the
	// entry's max_jobs): its run submits them side by side.
	InFlight int `json:"in_flight,omitempty"`
}

// lavaPlan is what planning knows of runners.yaml's lava: entries: a LAVA shard is
// all the cells one entry takes, whatever --by says, since the entry's max_jobs
// bounds one run's cells in the lab, and parallel shards of one entry would each
// take that many. Its args carry --runners and the --lava routes its run needs.
type lavaPlan struct {
	runners string            // the runners.yaml the shards' runs read
	routes  map[string]string // --lava TARGET=ENTRY
	labs    map[string]int    // entry → max_jobs
}

// entry is the lava: entry that takes target's cells, "" for none.
func (lp *lavaPlan) entry(target string) string {
	if lp == nil {
		return ""
	}
	if e, ok := lp.routes[target]; ok {
		return e
	}
	if _, ok := lp.labs[target]; ok {
		return target
	}
	return ""
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// planShards splits a job's selected cells into shards: one per target (by "target")
// or one per cell (by "cell"). kind keeps only the cells of that runner kind ("qemu",
// "board", …), or all (""). The fleet says which kind owns a target; a name no kind
// owns is a board of a runners.yaml the planning host need not have.
//
// With lp, a target that is (or is routed to) a lava: entry is a LAVA shard, one per
// entry, named lava-ENTRY.
func planShards(j *job.Job, f *fleet.Fleet, by string, patterns []string, kind runner.Kind, seed *int64, lp *lavaPlan) ([]shard, error) {
	if by != "target" && by != "cell" {
		return nil, fmt.Errorf("--by %q: want target or cell", by)
	}
	kinds := append(f.KindNames(), runner.KindBoard)
	if kind != "" && !slices.Contains(kinds, kind) {
		return nil, fmt.Errorf("--kind %q: want one of %v or empty", kind, kinds)
	}
	sel, err := job.Select(j.Cells(), patterns)
	if err != nil {
		return nil, err
	}
	shards := []shard{}
	idx := map[string]int{}
	for _, c := range sel {
		k := f.KindOf(c.Target)
		if k == "" {
			k = runner.KindBoard
		}
		entry := lp.entry(c.Target)
		if entry != "" {
			k = lava.Kind
		}
		if kind != "" && k != kind {
			continue
		}
		key := c.Target
		switch {
		case entry != "":
			key = "lava-" + entry
		case by == "cell":
			key = c.ID
		}
		i, ok := idx[key]
		if !ok {
			i = len(shards)
			idx[key] = i
			sh := shard{Name: unsafeName.ReplaceAllString(strings.ReplaceAll(key, "/", "-"), "_"), Kind: k, Args: []string{}}
			if entry != "" {
				sh.Args = append(sh.Args, "--runners", lp.runners)
				sh.InFlight = lp.labs[entry]
			}
			shards = append(shards, sh)
		}
		s := &shards[i]
		if route := c.Target + "=" + entry; entry != "" && entry != c.Target && !slices.Contains(s.Args, route) {
			s.Args = append(s.Args, "--lava", route)
		}
		s.Args = append(s.Args, "--cell", c.ID)
		s.Cells = append(s.Cells, c.ID)
	}
	names := map[string]bool{}
	for i := range shards {
		s := &shards[i]
		if names[s.Name] {
			return nil, fmt.Errorf("two shards would be named %q (cell or target names differ only in characters outside [A-Za-z0-9._-])", s.Name)
		}
		names[s.Name] = true
		if seed != nil {
			s.Seed = seed
			s.Args = append(s.Args, "--seed", fmt.Sprint(*seed))
		}
	}
	return shards, nil
}

func planCmd() *cobra.Command {
	var (
		by     string
		cells  []string
		kind   string
		seed   int64
		routes []string
	)
	c := &cobra.Command{
		Use:   "plan JOB",
		Short: "Split a job's cells into shards, as JSON for a GitHub Actions matrix (fromJSON)",
		Long: `Plan prints a JSON list of shards, each with a name, the kmodlab run arguments that
select its cells, and the cells themselves. Every selected cell is in exactly one shard.
Run each shard with 'kmodlab run JOB ARGS... --out DIR' on its own machine, then combine
the result directories with 'kmodlab merge --plan PLAN --out DIR DIR...'.

With --runners, the cells of a lava: entry (a target that is one, or one sent there
with --lava TARGET=ENTRY) are one shard per entry, kind lava, whose run keeps up to
the entry's max_jobs of them in the lab at once (in_flight): it boots nothing and needs
no self-hosted runner, only the entry's token in its environment.`,
		Example: `  kmodlab plan jobs/highmem-coherency.yaml
  kmodlab plan jobs/highmem-coherency.yaml --by cell --cell 'armv7-lpae/*'
  kmodlab plan jobs/highmem-coherency.yaml --runners .github/lava.yaml --lava armv7-lpae=lab-rpi4
  # in a workflow: strategy.matrix.shard: ${{ fromJSON(needs.plan.outputs.shards) }}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// No target check: planning needs no runners.yaml, only the cell expansion.
			j, err := job.Load(args[0], nil)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			var sp *int64
			if cmd.Flags().Changed("seed") {
				sp = &seed
			}
			// Without --runners the fleet has no runners.yaml: QEMU targets are known;
			// the rest are boards.
			f, lp := &fleet.Fleet{}, (*lavaPlan)(nil)
			if flagRunners != "" {
				if f, err = newFleet("auto", 0); err != nil {
					return &exitError{report.ExitInfra, err}
				}
				routes, err := parseRoutes(routes)
				if err != nil {
					return &exitError{report.ExitInfra, err}
				}
				lp = newLavaPlan(flagRunners, routes)
			} else if len(routes) > 0 {
				return &exitError{report.ExitInfra, fmt.Errorf("--lava needs --runners (the runners.yaml with the lava: entries)")}
			}
			shards, err := planShards(j, f, by, cells, runner.Kind(kind), sp, lp)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			data, err := json.Marshal(shards)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, string(data))
			return nil
		},
	}
	c.Flags().StringVar(&by, "by", "target", "one shard per target or per cell")
	c.Flags().StringSliceVar(&cells, "cell", nil, "plan only these cells (as kmodlab run --cell)")
	c.Flags().StringVar(&kind, "kind", "", "only QEMU targets (qemu), only boards (board) or only LAVA entries (lava)")
	c.Flags().StringVar(&flagRunners, "runners", "", "runners.yaml: its boards and lava: entries (LAVA cells become one shard per entry)")
	c.Flags().StringArrayVar(&routes, "lava", nil, "plan a target's cells as LAVA jobs on a lava: entry, TARGET=ENTRY (repeatable, as kmodlab run)")
	c.Flags().Int64Var(&seed, "seed", 0, "give every shard this seed (default: each run picks and records its own)")
	return c
}

// newLavaPlan is the lava: entries of the last newFleet (none: nil) with the routes.
func newLavaPlan(runners string, routes map[string]string) *lavaPlan {
	if lavaKind == nil {
		return nil
	}
	lp := &lavaPlan{runners: runners, routes: routes, labs: map[string]int{}}
	for _, l := range lavaKind.Labs {
		lp.labs[l.Name] = l.MaxJobs
	}
	return lp
}

// readPlans reads plan files (the output of kmodlab plan; several are concatenated) and
// returns the planned cells in order.
func readPlans(files []string) ([]string, error) {
	var want []string
	seen := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var shards []shard
		if err := json.Unmarshal(data, &shards); err != nil {
			return nil, fmt.Errorf("%s: not a kmodlab plan: %w", f, err)
		}
		for _, s := range shards {
			for _, id := range s.Cells {
				if other, ok := seen[id]; ok {
					return nil, fmt.Errorf("%s: cell %s is planned twice (shards %s and %s)", f, id, other, s.Name)
				}
				seen[id] = s.Name
				want = append(want, id)
			}
		}
	}
	return want, nil
}
