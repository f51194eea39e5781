package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/bisect"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/run"
	"github.com/spf13/cobra"
)

func bisectCmd() *cobra.Command {
	var (
		cell, good, bad, module, out, accel string
		repeat                              int
		minRate                             float64
		seed                                int64
		sets                                []string
	)
	c := &cobra.Command{
		Use:   "bisect JOB --cell C --good REV --bad REV",
		Short: "Find the module commit that makes a cell show a bug (git history of the job's module directory)",
		Long: `Bisect walks the git history of the job's module directory between --good and --bad
(only commits that touch that directory). Each step checks the module out at a
revision into a temporary directory (git archive), builds it, and runs the one cell
--repeat times; a revision is bad when the share of repeats showing a bug
(REPRODUCED, CRASHED, HUNG, TEST-FAILED) reaches --min-rate (default: the job's
expect.min_rate, else any repeat). INFRA and BUILD-FAILED revisions are skipped,
never good. The bad revision runs first: a cell that does not show the bug there
says so with its evidence. docs/bisect.md has the details.`,
		Example: `  kmodlab bisect /tmp/history/job.yaml --cell armv7-lpae/kmap --good base --bad HEAD --repeat 3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t0 := time.Now()
			f, err := newFleet(accel, 4*time.Minute)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			j, err := job.Load(args[0], f.Known)
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			sel, err := job.Select(j.Cells(), []string{cell})
			if err != nil {
				return err
			}
			if len(sel) != 1 {
				return fmt.Errorf("--cell %s: matches %d cells, bisect runs one", cell, len(sel))
			}
			vars, err := parseSets(j, sets)
			if err != nil {
				return err
			}
			mi, err := pickModule(j, module)
			if err != nil {
				return err
			}
			h, err := openHistory(j.Path(j.Build.Modules[mi].Dir))
			if err != nil {
				return err
			}
			revs, err := h.revs(good, bad)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("min-rate") {
				minRate = j.Expect.MinRate
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano() % 1000000
			}
			if out == "" {
				out = filepath.Join("results", "bisect-"+time.Now().Format("20060102-150405"))
			}
			fmt.Fprintf(stderr, "kmodlab: bisect %s in %s: %d revisions (%s..%s), %d repeats each, min rate %g, seed %d, results in %s\n",
				sel[0].ID, h.prefix, len(revs), good, bad, repeat, minRate, seed, out)
			r := &revRunner{h: h, j: j, module: mi, cell: sel[0], o: run.Options{Seed: seed, Vars: vars, Machines: f,
				CacheDir: f.Builder.CacheDir, Canary: true, Version: version, Progress: stderr, Repeat: repeat, Parallel: 1},
				out: out}
			res, err := bisect.Run(ctx, revs, r, minRate, func(s bisect.Step) {
				fmt.Fprintf(stderr, "kmodlab: bisect: %s is %s (%s)\n", h.short(s.Rev), s.Judged, strings.TrimSpace(s.Rate+" "+errText(s.Err)))
			})
			if res != nil {
				fmt.Fprint(stdout, res.Report(h.describe))
				if res.FirstBad != "" {
					fmt.Fprintf(stdout, "replay: kmodlab bisect %s --cell %s --good %s^ --bad %s --repeat %d --seed %d\n", args[0], sel[0].ID, res.FirstBad[:12], res.FirstBad[:12], repeat, seed)
					for _, s := range res.Steps {
						if s.Rev == res.FirstBad && s.Outcome.Replay != "" {
							fmt.Fprintf(stdout, "replay the cell (module at %s): %s\n", res.FirstBad[:12], s.Outcome.Replay)
						}
					}
				}
				fmt.Fprintf(stdout, "wall time: %.0f s\n", time.Since(t0).Seconds())
			}
			if err != nil {
				return &exitError{report.ExitInfra, err}
			}
			if res.FirstBad == "" && !res.NotShown {
				return &exitError{report.ExitMismatch, fmt.Errorf("no single first bad commit")}
			}
			return nil
		},
	}
	c.Flags().StringVar(&cell, "cell", "", "the one cell to run at each revision (required)")
	c.Flags().StringVar(&good, "good", "", "a revision where the cell does not show the bug (required)")
	c.Flags().StringVar(&bad, "bad", "HEAD", "a revision where it does")
	c.Flags().StringVar(&module, "module", "", "which of the job's modules to bisect (default: the first)")
	c.Flags().IntVar(&repeat, "repeat", 3, "runs of the cell per revision")
	c.Flags().Float64Var(&minRate, "min-rate", 0, "share of repeats that must show the bug for bad (default: the job's expect.min_rate, 0: any)")
	c.Flags().Int64Var(&seed, "seed", 0, "seed for the stress tools (default: random, printed)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override one of the job's vars, as kmodlab run --set")
	c.Flags().StringVar(&out, "out", "", "results directory (default results/bisect-<timestamp>), one subdirectory per step")
	c.Flags().StringVar(&accel, "accel", "auto", "kvm, tcg or auto")
	c.MarkFlagRequired("cell")
	c.MarkFlagRequired("good")
	return c
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func pickModule(j *job.Job, name string) (int, error) {
	if len(j.Build.Modules) == 0 {
		return 0, fmt.Errorf("%s builds no module: nothing to bisect", j.File)
	}
	if name == "" {
		return 0, nil
	}
	var names []string
	for i, m := range j.Build.Modules {
		if m.Name == name {
			return i, nil
		}
		names = append(names, m.Name)
	}
	return 0, fmt.Errorf("--module %s: %s builds %s", name, j.File, strings.Join(names, ", "))
}

// history is the git history of the module's directory.
type history struct {
	top, prefix string // the repository's top and the module directory inside it
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func openHistory(dir string) (*history, error) {
	top, err := git(dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("the module directory %s is not in a git repository: %w", dir, err)
	}
	abs, _ := filepath.Abs(dir)
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	prefix, err := filepath.Rel(top, abs)
	if err != nil || strings.HasPrefix(prefix, "..") {
		return nil, fmt.Errorf("the module directory %s is not inside %s", dir, top)
	}
	return &history{top: top, prefix: prefix}, nil
}

// revs are the commits after good up to bad that touch the module directory, oldest
// first, bad last.
func (h *history) revs(good, bad string) ([]string, error) {
	g, err := git(h.top, "rev-parse", "--verify", good+"^{commit}")
	if err != nil {
		return nil, fmt.Errorf("--good %s: %w", good, err)
	}
	b, err := git(h.top, "rev-parse", "--verify", bad+"^{commit}")
	if err != nil {
		return nil, fmt.Errorf("--bad %s: %w", bad, err)
	}
	if _, err := git(h.top, "merge-base", "--is-ancestor", g, b); err != nil {
		return nil, fmt.Errorf("--good %s is not an ancestor of --bad %s", good, bad)
	}
	out, err := git(h.top, "rev-list", "--reverse", "--ancestry-path", g+".."+b, "--", h.prefix)
	if err != nil {
		return nil, err
	}
	revs := strings.Fields(out)
	if len(revs) == 0 || revs[len(revs)-1] != b {
		revs = append(revs, b) // bad itself is always judged last
	}
	return revs, nil
}

func (h *history) short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// describe is "abc123def456 (subject)".
func (h *history) describe(rev string) string {
	s, err := git(h.top, "log", "-1", "--format=%s", rev)
	if err != nil {
		return h.short(rev)
	}
	return fmt.Sprintf("%s (%s)", h.short(rev), s)
}

// checkout writes the module directory at rev into dir (git archive: no work tree
// or index of the user's repository is touched).
func (h *history) checkout(ctx context.Context, rev, dir string) (string, error) {
	arch := exec.CommandContext(ctx, "git", "-C", h.top, "archive", "--format=tar", rev, "--", h.prefix)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := arch.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var e1, e2 bytes.Buffer
	arch.Stderr, untar.Stderr = &e1, &e2
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := arch.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("git archive %s: %v: %s", h.short(rev), err, strings.TrimSpace(e1.String()))
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("untar %s: %v: %s", h.short(rev), err, strings.TrimSpace(e2.String()))
	}
	return filepath.Join(dir, h.prefix), nil
}

// revRunner runs the cell with the module checked out at a revision.
type revRunner struct {
	h      *history
	j      *job.Job
	module int
	cell   job.Cell
	o      run.Options
	out    string
	n      int
}

func (r *revRunner) Run(ctx context.Context, rev string) (bisect.Outcome, error) {
	r.n++
	tmp, err := os.MkdirTemp("", "kmodlab-bisect-")
	if err != nil {
		return bisect.Outcome{}, err
	}
	defer os.RemoveAll(tmp)
	dir, err := r.h.checkout(ctx, rev, tmp)
	if err != nil {
		return bisect.Outcome{}, err
	}
	j := *r.j
	j.Build.Modules = append([]job.Module(nil), r.j.Build.Modules...)
	j.Build.Modules[r.module].Dir = dir
	o := r.o
	o.Job, o.Cells = &j, []job.Cell{r.cell}
	o.Out = filepath.Join(r.out, fmt.Sprintf("step%d-%s", r.n, r.h.short(rev)))
	rep, err := run.Run(ctx, o)
	if err != nil {
		return bisect.Outcome{}, err
	}
	if len(rep.Cells) != 1 {
		return bisect.Outcome{}, fmt.Errorf("the run gave %d cells", len(rep.Cells))
	}
	c := rep.Cells[0]
	oc := bisect.Outcome{Evidence: c.Evidence, Replay: c.Replay}
	if len(c.Runs) == 0 {
		oc.Verdicts = []verdict.Verdict{c.Verdict}
	}
	for _, rr := range c.Runs {
		oc.Verdicts = append(oc.Verdicts, rr.Verdict)
	}
	return oc, nil
}
