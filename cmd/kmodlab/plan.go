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
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// planShards splits a job's selected cells into shards: one per target (by "target")
// or one per cell (by "cell"). kind keeps only the cells of that runner kind ("qemu",
// "board", …), or all (""). The fleet says which kind owns a target; a name no kind
// owns is a board of a runners.yaml the planning host need not have.
func planShards(j *job.Job, f *fleet.Fleet, by string, patterns []string, kind runner.Kind, seed *int64) ([]shard, error) {
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
		if kind != "" && k != kind {
			continue
		}
		key := c.Target
		if by == "cell" {
			key = c.ID
		}
		i, ok := idx[key]
		if !ok {
			i = len(shards)
			idx[key] = i
			shards = append(shards, shard{Name: unsafeName.ReplaceAllString(strings.ReplaceAll(key, "/", "-"), "_"), Kind: k, Args: []string{}})
		}
		s := &shards[i]
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
		by    string
		cells []string
		kind  string
		seed  int64
	)
	c := &cobra.Command{
		Use:   "plan JOB",
		Short: "Split a job's cells into shards, as JSON for a GitHub Actions matrix (fromJSON)",
		Long: `Plan prints a JSON list of shards, each with a name, the kmodlab run arguments that
select its cells, and the cells themselves. Every selected cell is in exactly one shard.
Run each shard with 'kmodlab run JOB ARGS... --out DIR' on its own machine, then combine
the result directories with 'kmodlab merge --plan PLAN --out DIR DIR...'.`,
		Example: `  kmodlab plan jobs/highmem-coherency.yaml
  kmodlab plan jobs/highmem-coherency.yaml --by cell --cell 'armv7-lpae/*'
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
			// The fleet without runners.yaml: QEMU targets are known; the rest are boards.
			shards, err := planShards(j, &fleet.Fleet{}, by, cells, runner.Kind(kind), sp)
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
	c.Flags().StringVar(&kind, "kind", "", "only QEMU targets (qemu) or only boards (board)")
	c.Flags().Int64Var(&seed, "seed", 0, "give every shard this seed (default: each run picks and records its own)")
	return c
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
