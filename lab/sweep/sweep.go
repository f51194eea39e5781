// Package sweep is the compile-only sweep: a job's modules built against every kernel
// headers package its targets' suites serve (or a range of them), with no guest
// booted. Each kernel × target is one cell of an ordinary report (results.json, JUnit,
// summary, HTML), so kmodlab merge and the workflow take it like a run's.
package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/images/debian"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
)

// Options of one sweep.
type Options struct {
	Job     *job.Job
	Builder *images.Builder
	Targets []*images.Target // target lines to sweep (TARGET@LINE)
	Suites  []string         // the suites to read instead of each line's own and its -backports
	Kernels []string         // keep kernels whose release or ABI matches one of these globs
	Range   string           // keep kernels whose ABI is within FROM..TO (Debian version order; either end may be empty)
	// Parallel is how many kernels build at once (headers are fetched one at a time).
	Parallel int
	Strict   bool // the modules' W=1 warnings fail the build (also the job's build.strict)
	Out      string
	Version  string
	Progress io.Writer
	Log      *slog.Logger
}

// Item is one kernel of one target line.
type Item struct {
	Base   string // the target without its line: the table's column
	Line   string // the target line's name (x86_64@trixie): the job's expectations match it
	Kernel images.SweptKernel
}

// Result is a finished sweep: the report and what it took.
type Result struct {
	Run     *report.Run
	Items   []Item
	Notes   []string
	Wall    time.Duration
	Fetched int // headers trees fetched (not in the cache before)
}

// Kernels lists what a sweep would build: every kernel each target line's suites
// serve, filtered by o.Kernels and o.Range.
func Kernels(ctx context.Context, o Options) ([]Item, []string, error) {
	var items []Item
	var notes []string
	for _, t := range o.Targets {
		ks, n, err := o.Builder.SweepKernels(ctx, t, o.Suites)
		notes = append(notes, n...)
		if err != nil {
			return nil, notes, fmt.Errorf("%s: %w", t.Name, err)
		}
		for _, k := range ks {
			ok, err := keep(k, o.Kernels, o.Range)
			if err != nil {
				return nil, notes, err
			}
			if ok {
				items = append(items, Item{Base: t.Base, Line: t.Name, Kernel: k})
			}
		}
	}
	return items, notes, nil
}

func keep(k images.SweptKernel, globs []string, rng string) (bool, error) {
	if rng != "" {
		from, to, ok := strings.Cut(rng, "..")
		if !ok {
			return false, fmt.Errorf("--range %q: want FROM..TO (kernel ABIs, e.g. 6.1.0-53..6.1.0-57; either end may be empty)", rng)
		}
		if (from != "" && debian.CompareVersions(k.ABI, from) < 0) || (to != "" && debian.CompareVersions(k.ABI, to) > 0) {
			return false, nil
		}
	}
	if len(globs) == 0 {
		return true, nil
	}
	for _, g := range globs {
		for _, s := range []string{k.Release, k.ABI} {
			m, err := path.Match(g, s)
			if err != nil {
				return false, fmt.Errorf("--kernel %q: %w", g, err)
			}
			if m {
				return true, nil
			}
		}
	}
	return false, nil
}

// Run builds the job's modules for every item and writes the reports into o.Out.
func Run(ctx context.Context, o Options, items []Item) (*Result, error) {
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	start := time.Now()
	rep := &report.Run{Job: o.Job.Name, JobFile: o.Job.File, Started: start.UTC(), Version: o.Version}
	sort.SliceStable(items, func(i, j int) bool {
		if c := debian.CompareVersions(items[i].Kernel.ABI, items[j].Kernel.ABI); c != 0 {
			return c < 0
		}
		return items[i].Base < items[j].Base
	})
	cells := make([]*report.Cell, len(items))
	fetched := make([]bool, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for w := 0; w < o.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cells[i], fetched[i] = buildOne(ctx, o, items[i])
				mu.Lock()
				done++
				c := cells[i]
				fmt.Fprintf(o.Progress, "[%6.1fs] %3d/%d %-30s %-10s %s (headers %.1f s, build %.1f s, %.1f s CPU)\n", time.Since(start).Seconds(), done, len(items),
					items[i].Kernel.Release, items[i].Base, c.BuildLine(), c.Timings["headers"], c.Timings["build"], c.Build.CPUSeconds)
				mu.Unlock()
			}
		}()
	}
	for i := range items { // oldest kernel first
		next <- i
	}
	close(next)
	wg.Wait()
	res := &Result{Items: items}
	for i, c := range cells {
		rep.Cells = append(rep.Cells, c)
		if fetched[i] {
			res.Fetched++
		}
	}
	seen := map[string]bool{}
	for _, c := range rep.Cells {
		if !seen[c.Target] {
			seen[c.Target] = true
			rep.Targets = append(rep.Targets, c.Target)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	res.Wall = time.Since(start)
	res.Run = rep
	if err := rep.Write(o.Out); err != nil {
		return res, fmt.Errorf("write reports: %w", err)
	}
	if err := writePlan(o, rep); err != nil {
		return res, err
	}
	return res, nil
}

// CellID is a sweep cell's ID: the kernel ABI, then the target ("6.1.0-47/x86_64"),
// so the report's matrix has a row per kernel and a column per target.
func CellID(it Item) string { return it.Kernel.ABI + "/" + it.Base }

func buildOne(ctx context.Context, o Options, it Item) (*report.Cell, bool) {
	j := o.Job
	k := it.Kernel
	want := verdict.ExpectBuilds
	if j.BuildExpect(it.Line) == verdict.ExpectBuildFails {
		want = verdict.ExpectBuildFails
	}
	c := &report.Cell{ID: CellID(it), Target: k.ABI, Kernel: k.Release, Expect: want, Runner: "sweep",
		Params:   map[string]string{"target": it.Base, "line": it.Line, "suite": k.Suite, "version": k.Version},
		Timings:  map[string]float64{},
		Evidence: []string{fmt.Sprintf("kernel %s %s (%s)", k.Release, k.Version, k.Suite)},
		Replay:   fmt.Sprintf("kmodlab build sweep %s --target %s --kernel %s", j.File, it.Line, k.Release),
		Outcome:  report.Outcome{LogDir: filepath.Join(o.Out, strings.ReplaceAll(CellID(it), "/", "_")), FirstDivergenceMS: -1, StopMS: -1},
		Build:    &report.Build{Strict: o.Strict || j.Build.Strict}}
	os.MkdirAll(c.LogDir, 0o755)
	t0 := time.Now()
	cached := o.Builder.HasHeaders(k.Target)
	hdr, err := o.Builder.Headers(ctx, k.Target)
	c.Timings["headers"] = time.Since(t0).Seconds()
	if err != nil {
		return infra(c, verdict.PieceHeaders, err), !cached
	}
	t := k.Target
	kb := build.Kbuild{Headers: hdr, Arch: t.ModuleBuild.Arch, CrossCompile: t.ModuleBuild.CrossCompile,
		CrossPackage: t.ModuleBuild.CrossPackage, Release: k.Release}
	var hashes []string
	for _, m := range j.Build.Modules {
		src := j.Path(m.Dir)
		r, err := build.Build(ctx, kb, src, o.Builder.CacheDir, build.Options{Strict: c.Build.Strict, Fresh: true})
		if r != nil {
			c.Timings["build"] += r.Seconds
			c.Build.Seconds += r.Seconds
			c.Build.CPUSeconds += r.CPUSeconds
			logFile := filepath.Join(c.LogDir, "build-"+m.Name+".log")
			os.WriteFile(logFile, []byte(r.Log), 0o644)
			c.Build.Logs = append(c.Build.Logs, logFile)
			for _, w := range r.Warnings() {
				c.Build.Warnings++
				if len(c.Build.List) < 20 {
					c.Build.List = append(c.Build.List, m.Name+": "+w.String())
				}
			}
		}
		var f *build.Failure
		switch {
		case errors.As(err, &f):
			failed(c, j, m, f)
			return c, !cached
		case err != nil:
			return infra(c, verdict.PieceToolchain, err), !cached
		}
		hashes = append(hashes, build.HashTree(src))
	}
	c.ModuleHash = strings.Join(hashes, "+")
	c.Verdict = verdict.Built
	c.Met = want != verdict.ExpectBuildFails
	c.Evidence = append(c.Evidence, fmt.Sprintf("built in %.1f s (%.1f s CPU)", c.Build.Seconds, c.Build.CPUSeconds))
	if s := c.Build.WarningSummary(); s != "" {
		c.Evidence = append(c.Evidence, s)
	}
	if !c.Met {
		c.Reasons = []string{"the job expects the build to fail on this line, and it built"}
	}
	return c, !cached
}

// failed makes c BUILD-FAILED with the first error, at its line in the repository.
func failed(c *report.Cell, j *job.Job, m job.Module, f *build.Failure) {
	b := verdict.BuildFailure{Piece: verdict.PieceModule, Name: m.Name, Strict: f.Strict, Warnings: c.Build.Warnings}
	if f.First != nil {
		b.First = f.First.String()
	} else if f.Err != nil {
		b.First = f.Err.Error()
	}
	d := verdict.DecideBuild(b, c.Expect)
	c.Verdict, c.Met, c.Reasons = d.Verdict, d.Met, d.Reasons
	c.Build.FirstError, c.Build.Module = b.First, m.Name
	c.Evidence = append(c.Evidence, "build: "+d.Reasons[0])
	if s := c.Build.WarningSummary(); s != "" && !f.Strict {
		c.Evidence = append(c.Evidence, s)
	}
	c.Evidence = append(c.Evidence, "build log: "+strings.Join(c.Build.Logs, ", "))
	c.BuildSource = Source(j, m, f)
}

// Source places a build failure's first error in the repository: the module's file
// (or the module's line that included the header it is in), relative to the job's root.
func Source(j *job.Job, m job.Module, f *build.Failure) *report.Source {
	if f.First == nil {
		return nil
	}
	file, line, ok := f.First.SourceLine()
	if !ok {
		return nil
	}
	rel, err := filepath.Rel(j.RootDir(), filepath.Join(j.Path(m.Dir), file))
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = filepath.Join(m.Dir, file)
	}
	return &report.Source{File: filepath.ToSlash(rel), Line: line, Frame: f.First.String()}
}

func infra(c *report.Cell, piece string, err error) *report.Cell {
	d := verdict.DecideBuild(verdict.BuildFailure{Piece: piece, First: firstLine(err.Error())}, c.Expect)
	c.Verdict, c.Met, c.Reasons = d.Verdict, d.Met, d.Reasons
	c.Error = err.Error()
	c.Evidence = append(c.Evidence, "infrastructure error: "+d.Reasons[0])
	os.WriteFile(filepath.Join(c.LogDir, "error.txt"), []byte(err.Error()), 0o644)
	return c
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// writePlan writes plan.json: one shard with every cell, so `kmodlab merge --plan
// OUT/plan.json` takes the sweep (or shards of it, one per target).
func writePlan(o Options, rep *report.Run) error {
	type shard struct {
		Name  string   `json:"name"`
		Kind  string   `json:"kind"`
		Args  []string `json:"args"`
		Cells []string `json:"cells"`
	}
	s := shard{Name: "sweep", Kind: "sweep", Args: []string{}, Cells: []string{}}
	for _, t := range o.Targets {
		s.Args = append(s.Args, "--target", t.Name)
	}
	for _, c := range rep.Cells {
		s.Cells = append(s.Cells, c.ID)
	}
	data, err := json.MarshalIndent([]shard{s}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.Out, "plan.json"), data, 0o644)
}

// Table is the sweep's terminal table: a row per kernel (ABI, version, suite), a
// column per target, each "built 1.4s", "3 warn 1.5s" or "FAILED [n]", the failures'
// first errors listed under it by number.
func Table(rep *report.Run) string {
	type row struct{ abi, version, suite string }
	var rows []row
	var cols []string
	at := map[[2]string]*report.Cell{}
	seenR, seenC := map[string]bool{}, map[string]bool{}
	for _, c := range rep.Cells {
		base := c.Params["target"]
		if !seenR[c.Target] {
			seenR[c.Target] = true
			rows = append(rows, row{c.Target, c.Params["version"], c.Params["suite"]})
		}
		if !seenC[base] {
			seenC[base] = true
			cols = append(cols, base)
		}
		at[[2]string{c.Target, base}] = c
	}
	sort.Strings(cols)
	errs := map[string]int{}
	var errList []string
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %-20s %-19s", "kernel", "version", "suite")
	for _, col := range cols {
		fmt.Fprintf(&b, " %-16s", col)
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-18s %-20s %-19s", r.abi, r.version, r.suite)
		for _, col := range cols {
			c := at[[2]string{r.abi, col}]
			s := "-"
			switch {
			case c == nil:
			case c.Verdict == verdict.BuildFailed:
				e := c.Build.FirstError
				n, ok := errs[e]
				if !ok {
					errList = append(errList, e)
					n = len(errList)
					errs[e] = n
				}
				s = fmt.Sprintf("FAILED [%d]", n)
			case c.Verdict == verdict.Built && c.Build.Warnings > 0:
				s = fmt.Sprintf("%d warn %.1fs", c.Build.Warnings, c.Build.Seconds)
			case c.Verdict == verdict.Built:
				s = fmt.Sprintf("built %.1fs", c.Build.Seconds)
			default:
				s = string(c.Verdict)
			}
			if c != nil && !c.Met {
				s += "!"
			}
			fmt.Fprintf(&b, " %-16s", s)
		}
		b.WriteString("\n")
	}
	for i, e := range errList {
		fmt.Fprintf(&b, "[%d] %s\n", i+1, e)
	}
	return b.String()
}
