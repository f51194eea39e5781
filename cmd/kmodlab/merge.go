package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/spf13/cobra"
)

type mergeOptions struct {
	out      string
	plans    []string
	jobFile  string
	cells    []string
	annotate bool
}

// merge reads the shards' results, checks them against the plan and writes the merged
// reports. It returns the merged run (nil on a merge error).
func merge(o mergeOptions, dirs []string, stdout io.Writer) (*report.Run, error) {
	var want []string
	switch {
	case len(o.plans) > 0 && o.jobFile != "":
		return nil, fmt.Errorf("give --plan or --job, not both")
	case len(o.plans) > 0:
		w, err := readPlans(o.plans)
		if err != nil {
			return nil, err
		}
		want = w
	case o.jobFile != "":
		j, err := job.Load(o.jobFile, nil)
		if err != nil {
			return nil, err
		}
		sel, err := job.Select(j.Cells(), o.cells)
		if err != nil {
			return nil, err
		}
		want = []string{}
		for _, c := range sel {
			want = append(want, c.ID)
		}
	default:
		return nil, fmt.Errorf("merge needs the plan to know which cells to expect: give --plan PLAN.json (kmodlab plan's output) or --job JOB [--cell …]")
	}
	var shards []*report.Shard
	var problems []string
	for _, d := range dirs {
		s, err := report.ReadShard(d)
		var me *report.MergeError
		switch {
		case errors.As(err, &me):
			problems = append(problems, me.Problems...)
			continue
		case err != nil:
			problems = append(problems, err.Error())
			continue
		}
		shards = append(shards, s)
	}
	if len(problems) > 0 {
		return nil, &report.MergeError{Problems: problems}
	}
	r, err := report.Merge(want, shards)
	if err != nil {
		return nil, err
	}
	if err := r.Write(o.out); err != nil {
		return nil, err
	}
	if o.annotate {
		for _, a := range r.Annotations() {
			fmt.Fprintln(stdout, a)
		}
	}
	return r, nil
}

func mergeCmd() *cobra.Command {
	var o mergeOptions
	c := &cobra.Command{
		Use:   "merge --out DIR (--plan PLAN.json | --job JOB) RESULTDIR...",
		Short: "Merge the results of shards (kmodlab plan + kmodlab run) into one report",
		Long: `Merge combines the results.json of each shard's results directory into one
results.json, junit.xml, summary.md (also appended to $GITHUB_STEP_SUMMARY) and
index.html in --out, prints the verdict matrix, and prints an ::error annotation for
every cell that missed its expectation when GITHUB_ACTIONS=true or with --annotate.

A cell the plan names that no shard reports, and a cell two shards report, are errors.

Exit codes, as for kmodlab run: 0 every cell as expected, 1 a cell's verdict differs
from its expectation, 2 an infrastructure error (including a failed merge).`,
		Example: `  kmodlab plan jobs/highmem-coherency.yaml > plan.json
  kmodlab merge --plan plan.json --out results/merged shards/*/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.out == "" {
				return &exitError{report.ExitInfra, errors.New("--out DIR is needed")}
			}
			if os.Getenv("GITHUB_ACTIONS") == "true" {
				o.annotate = true
			}
			r, err := merge(o, args, commands)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			fmt.Fprint(stdout, r.Matrix())
			fmt.Fprint(stdout, r.Details())
			fmt.Fprintf(stdout, "\nmerged %d shard(s), %d cells: %s/{results.json,junit.xml,summary.md,index.html}\n", len(args), len(r.Cells), o.out)
			if code := r.Code(); code != 0 {
				return &exitError{code, fmt.Errorf("exit %d: %s", code, map[int]string{1: "a cell missed its expectation", 2: "infrastructure error"}[code])}
			}
			return nil
		},
	}
	c.Flags().StringVar(&o.out, "out", "", "directory for the merged reports")
	c.Flags().StringArrayVar(&o.plans, "plan", nil, "kmodlab plan output naming every scheduled cell (repeatable)")
	c.Flags().StringVar(&o.jobFile, "job", "", "expect every cell of this job (instead of --plan)")
	c.Flags().StringSliceVar(&o.cells, "cell", nil, "with --job: expect only these cells")
	c.Flags().BoolVar(&o.annotate, "annotate", false, "print ::error annotations (on by default when GITHUB_ACTIONS=true)")
	return c
}
