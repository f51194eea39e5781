// Package run is the lab's pipeline: for each cell of a job it builds (cached), boots or
// attaches a machine, deploys over SSH, sets up, stresses, tears down, collects, and
// hands the evidence to lab/judge/verdict. Cells of one target share a machine while it stays
// healthy; a crash, hang or lost connection gets the next cell a fresh (or reset) one.
// One cell's failure never stops the others, and every machine is released on every
// path.
//
// One file per stage: run.go (options and scheduling), target.go (a target's machine:
// acquire, deploy, canary, release), cell.go (one cell: its phases, and the stages'
// values), step.go (one step and its End, the crash watcher), stop.go (the stop rule
// fed while stress runs, its Stopped), collect.go (kernel-log window, files, stress
// reports: a Collected), evidence.go (from a Collected to the verdict: Judged; the
// report's cell is filled by lab/report).
package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
)

// Machines gives the pipeline its machines; QEMU targets and boards both.
type Machines interface {
	build.Targets // what a target is, how its machine gets kernel modules
	// Acquire returns a ready machine; consoleLog, if set, receives its console.
	Acquire(ctx context.Context, target, consoleLog string) (runner.Runner, error)
}

// Options for one run.
type Options struct {
	Job      *job.Job
	Cells    []job.Cell
	Seed     int64
	Out      string
	Parallel int
	Repeat   int               // runs per cell (--repeat), default 1
	Full     bool              // run every stress step to its end, even after a sure verdict
	Vars     map[string]string // --set overrides
	Pins     map[string]string // --pin: hashes a replay must match
	Machines Machines
	CacheDir string
	Canary   bool
	Version  string
	Log      *slog.Logger
	Progress io.Writer
	StrictW1 bool // fail module builds that warn under W=1
}

// Run runs every selected cell and writes the reports.
func Run(ctx context.Context, o Options) (*report.Run, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Repeat < 1 {
		o.Repeat = 1
	}
	if err := report.CheckWritable(o.Out); err != nil {
		return nil, err // before any machine starts: nothing to clean up
	}
	rep := &report.Run{Job: o.Job.Name, JobFile: o.Job.File, Started: time.Now().UTC(), Keys: o.Job.Keys(), Version: o.Version}
	byTarget := map[string][]job.Cell{}
	var targets []string
	for _, c := range o.Cells {
		if _, ok := byTarget[c.Target]; !ok {
			targets = append(targets, c.Target)
		}
		byTarget[c.Target] = append(byTarget[c.Target], c)
	}
	rep.Targets = targets
	results := map[string]*report.Cell{}
	var mu sync.Mutex
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func(t string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p := &targetRun{o: o, target: t}
			for _, c := range p.run(ctx, byTarget[t]) {
				mu.Lock()
				results[c.ID] = c
				mu.Unlock()
			}
		}(t)
	}
	wg.Wait()
	for _, c := range o.Cells {
		rep.Cells = append(rep.Cells, results[c.ID])
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	if err := rep.Write(o.Out); err != nil {
		return rep, fmt.Errorf("write reports: %w", err)
	}
	return rep, nil
}

// DefaultParallel is the -j a run gets when none is given: every QEMU target at once
// when memory allows. Measured on 2 cores under TCG (default job, 10 s caps, stress
// sized by evidence): -j 1 102 s, -j 2 79 s, -j 3 72 s, with the same verdicts. Three
// starved guests verify fewer transactions per second (148 against 283 at -j 1), but a
// clean cell stops at its evidence target, not at a time, so that costs stress time,
// not evidence; the guests wait on I/O round trips more than they compute.
// The three guests take 11 GiB, so hosts under 16 GiB run one at a time.
func DefaultParallel() int {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1
	}
	var kb int64
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if kb < 16<<20 {
		return 1
	}
	return 3
}
