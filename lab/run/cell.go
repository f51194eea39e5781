package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/stop"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
)

// A cell's stages each return a value, and the next stage takes it:
//
//	step, phase:  (*cellRun).phase(ctx, name, steps, timeout, prior) Steps     step.go
//	stress stop:  (*stopper).finish() Stopped                                 stop.go
//	collect:      (*cellRun).collect(ctx, timeout, Steps, Stopped, addrs) Collected  collect.go
//	judge:        (*targetRun).judge(c job.Cell, col Collected) Judged        evidence.go
//	              (verdict.Decide inside, pure)
//	diagnose:     diagnose(ctx, runner, logDir) string, for a HUNG cell only  evidence.go
//	report:       record(rc *report.Cell, j Judged) → (*report.Cell).Record   lab/report
//
// judge reads no machine: a batch cell (a runner.Batch, whose job comes back whole as
// a runner.CellLog) builds a Collected from the log (newKernelLog for the kernel log's
// lines, parseStress for each fetched report, Steps from the step results) and goes
// the same way: j := p.judge(c, col); record(rc, j).

// cellRun is one run of one cell on one machine: what it was given. What happens is
// returned by each stage; the stop rule's state, which the streams' callbacks share
// with the step runner, is its own type (stopper).
type cellRun struct {
	p      *targetRun
	c      job.Cell
	rc     *report.Cell
	r      runner.Runner
	extra  map[string]string
	start  time.Time // the target's start, for progress lines
	follow *follower
	watch  *watcher
	stop   *stopper
}

// cell runs a cell Repeat times and sums the repeats up.
func (p *targetRun) cell(ctx context.Context, c job.Cell, start time.Time) *report.Cell {
	var runs []*report.Cell
	var ds []verdict.Decision
	for rep := 1; rep <= p.o.Repeat; rep++ {
		if ctx.Err() != nil && rep > 1 {
			break
		}
		rc, d := p.once(ctx, c, start, rep)
		runs = append(runs, rc)
		ds = append(ds, d)
	}
	if len(runs) == 1 {
		return runs[0]
	}
	sum := verdict.Aggregate(ds, p.o.Job.Expect.MinRate)
	var out report.Cell
	for _, rc := range runs {
		if rc.Verdict == sum.Verdict {
			out = *rc
			break
		}
	}
	out.Verdict, out.Met, out.Rate, out.MetRuns = sum.Verdict, sum.Met, sum.Rate, sum.MetRuns
	out.LogDir = filepath.Dir(out.LogDir)
	for i, rc := range runs {
		out.Runs = append(out.Runs, report.RunResult{Repeat: i + 1, Outcome: rc.Outcome, Seconds: sumTimings(rc.Timings)})
	}
	return &out
}

func sumTimings(t map[string]float64) float64 {
	s := 0.0
	for _, v := range t {
		s += v
	}
	return s
}

// once runs the cell one time.
func (p *targetRun) once(ctx context.Context, c job.Cell, start time.Time, rep int) (*report.Cell, verdict.Decision) {
	if b := p.batchOf(); b != nil { // a lab that takes the cell as one job (batch.go)
		return p.batchOnce(ctx, b, c, start, rep)
	}
	rc := p.newCell(c)
	if p.o.Repeat > 1 {
		rc.LogDir = filepath.Join(rc.LogDir, fmt.Sprintf("run%02d", rep))
	}
	os.MkdirAll(rc.LogDir, 0o755)
	t0 := time.Now()
	p.progress(c.ID, "machine", start)
	r, err := p.machine(ctx, rc.LogDir)
	var be *buildError
	if errors.As(err, &be) { // a module built on the machine (a board) does not build
		rc = p.buildFailedCell(c, be)
		rc.Timings["machine"] = time.Since(t0).Seconds()
		return rc, verdict.Decision{Verdict: rc.Verdict, Met: rc.Met, Reasons: rc.Reasons}
	}
	if err != nil {
		rc = p.infraCell(c, err)
		if p.o.Repeat > 1 {
			rc.LogDir = filepath.Join(rc.LogDir, fmt.Sprintf("run%02d", rep))
		}
		rc.Timings["machine"] = time.Since(t0).Seconds()
		return rc, verdict.Decision{Verdict: verdict.Infra, Reasons: rc.Reasons}
	}
	rc.Timings["machine"] = time.Since(t0).Seconds()
	cr := &cellRun{p: p, c: c, rc: rc, r: r, start: start, extra: map[string]string{}}
	cr.stop = newStopper(r, stop.Rule{Full: p.o.Full, Factor: p.o.Job.Expect.Factor(), Steps: len(p.o.Job.Stress),
		Min: p.o.Job.Expect.Evidence(), Hunting: c.Expect == verdict.ExpectReproduces || c.Expect == verdict.ExpectCrashes})
	for k, v := range p.o.Vars {
		cr.extra[k] = v
	}
	d, col := cr.do(ctx)
	if reason := broken(c, col, d); reason != "" {
		// Whatever the machine went through, the next cell gets a fresh or reset one.
		p.release(ctx, reason)
	}
	p.progress(c.ID, string(rc.Verdict), start)
	return rc, d
}

// broken says why the machine must not be reused after cell c ("" when it can be).
func broken(c job.Cell, col Collected, d verdict.Decision) string {
	switch {
	case col.Lost:
		return "connection lost"
	case d.Verdict == verdict.Crashed || d.Verdict == verdict.Hung:
		return c.ID + ": " + string(d.Verdict)
	case col.End == TimedOut || col.End == Crashed:
		return c.ID + ": a step was stopped"
	case col.Kernel.Window == nil:
		return "kernel log unreadable"
	}
	for _, s := range col.Failed {
		if s.Phase == "setup" || s.Phase == "teardown" {
			return fmt.Sprintf("%s step %q failed", s.Phase, s.Name)
		}
	}
	return ""
}

// do runs the cell's phases and returns its verdict and what it was judged from.
func (cr *cellRun) do(ctx context.Context) (verdict.Decision, Collected) {
	p, rc := cr.p, cr.rc
	rc.Kernel, rc.ImageHash, rc.Accel, rc.Runner = p.info.KernelRelease, p.info.ImageHash, p.info.Accel, p.info.Name
	rc.Replay = p.newCell(cr.c).Replay
	rc.Highmem = p.highmem

	// The window starts after the newest kernel-log record now.
	seq, err := cr.agentLast(ctx)
	if err != nil {
		col := Collected{Stop: notRun, Lost: errors.Is(err, runner.ErrConnectionLost)}
		col.Failed = []verdict.Step{{Phase: "collect", Name: "window start", Kind: verdict.FailError, Detail: err.Error()}}
		return cr.conclude(ctx, col), col
	}
	cr.follow = startFollower(ctx, cr.r, cr.agentPath(), seq, filepath.Join(rc.LogDir, "kern.log"), cr.stop.onDivergence)
	cr.stop.follow(cr.follow.counts)
	cr.watch = startWatcher(cr.r, cr.follow)
	defer cr.watch.stop()

	to := p.o.Job.Timeouts
	var steps Steps
	var addrs map[string]uint64
	stopped := notRun
	steps.add(cr.phase(ctx, "setup", p.o.Job.Setup, to.Setup.D(90*time.Second), nil))
	if steps.setupOK() {
		addrs = cr.loadAddresses(ctx)
		sctx, cancel := context.WithCancel(ctx)
		cr.stop.start(cancel)
		cr.stop.kernelClock(cr.kernelNow(ctx))
		steps.add(cr.phase(sctx, "stress", p.o.Job.Stress, to.Stress.D(5*time.Minute), steps.Stress))
		cancel()
		stopped = cr.stop.finish()
	}
	if steps.End.Usable() {
		steps.add(cr.phase(ctx, "teardown", p.o.Job.Teardown, to.Setup.D(90*time.Second), steps.Stress))
	}
	t := time.Now()
	p.progress(cr.c.ID, "collect", cr.start)
	col := cr.collect(ctx, to.Collect.D(90*time.Second), steps, stopped, addrs)
	rc.Timings["collect"] = time.Since(t).Seconds()
	return cr.conclude(ctx, col), col
}

// conclude judges what the cell collected, has a hung machine diagnosed (it is still
// there to ask), and fills the report's cell.
func (cr *cellRun) conclude(ctx context.Context, col Collected) verdict.Decision {
	j := cr.p.judge(cr.c, col)
	if j.Decision.Verdict == verdict.Hung {
		if note := diagnose(ctx, cr.r, cr.rc.LogDir); note != "" {
			j.Notes = append(j.Notes, note)
		}
	}
	record(cr.rc, j)
	return j.Decision
}

func (cr *cellRun) agentPath() string { return cr.p.o.Job.Dest() + "/kmodlab-kmsg" }

// agentLast reads the newest kernel-log record's sequence number.
func (cr *cellRun) agentLast(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out string
	var err error
	// The command is idempotent, so a session the SSH server refused to start (seen
	// with dropbear right after the previous cell's follower was stopped: "EOF") is
	// tried again; a command that ran and failed is not.
	for try := 0; try < 3; try++ {
		out, err = runner.Output(ctx, cr.r, cr.agentPath()+" last")
		var ee *runner.ExitError
		if err == nil || errors.As(err, &ee) || errors.Is(err, runner.ErrConnectionLost) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 300 * time.Millisecond)
	}
	if err != nil {
		return 0, fmt.Errorf("read the kernel log's sequence number: %w", err)
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read the kernel log's sequence number: %q", strings.TrimSpace(out))
	}
	return seq, nil
}

// kernelNow reads the kernel's clock (µs since boot), -1 when it cannot.
func (cr *cellRun) kernelNow(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := runner.Output(ctx, cr.r, "cat /proc/uptime")
	if err != nil {
		return -1
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return -1
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return int64(s * 1e6)
}

// loadAddresses reads where the job's modules' code was loaded, for symbolizing.
func (cr *cellRun) loadAddresses(ctx context.Context) map[string]uint64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs := map[string]uint64{}
	for _, m := range cr.p.o.Job.Build.Modules {
		out, err := runner.Output(ctx, cr.r, "cat /sys/module/"+runner.Quote(m.Name)+"/sections/.text 2>/dev/null || true")
		if err != nil {
			return addrs
		}
		if v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(out), "0x"), 16, 64); err == nil && v != 0 {
			addrs[m.Name] = v
		}
	}
	return addrs
}
