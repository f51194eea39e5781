package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/lab/stop"
	"github.com/kmodlab/kmodlab/lab/verdict"
)

// cellRun is one run of one cell on one machine: what it was given and what it
// collected. Each stage (step.go, collect.go, evidence.go) works on it.
type cellRun struct {
	p      *targetRun
	c      job.Cell
	rep    int
	rc     *report.Cell
	r      runner.Runner
	extra  map[string]string
	start  time.Time // the target's start, for progress lines
	follow *follower
	watch  *watcher

	// What happened.
	failed      []verdict.Step
	stress      []verdict.Stress
	lost        bool
	hung        bool // a step timed out
	crashed     bool // a step was stopped because the kernel crashed
	windowStart bool
	windowEnd   uint64
	textAddrs   map[string]uint64 // module -> .text load address, for symbolizing

	// Stress timing and the stop rule (stop.go).
	rule          stop.Rule
	stressStart   time.Time
	stressKernUS  int64 // kernel clock at stress start (µs), -1 unknown
	stopMu        sync.Mutex
	stopStress    context.CancelFunc
	stopReason    string
	stopAt        time.Time
	firstDiverged time.Time
	cur           *stressStep // the stress step running now, nil between steps
	sized         []string    // stress steps stopped for enough evidence, and when
	sizedReason   string      // the last such stop's reason
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
		out.Runs = append(out.Runs, report.RunResult{Repeat: i + 1, Verdict: rc.Verdict, Met: rc.Met, Reasons: rc.Reasons,
			FirstDivergenceMS: rc.FirstDivergenceMS, StopMS: rc.StopMS, StopReason: rc.StopReason,
			Seconds: sumTimings(rc.Timings), LogDir: rc.LogDir})
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
	cr := &cellRun{p: p, c: c, rep: rep, rc: rc, r: r, start: start, extra: map[string]string{}, stressKernUS: -1}
	me := p.o.Job.Expect.Evidence()
	cr.rule = stop.Rule{Full: p.o.Full, Factor: p.o.Job.Expect.Factor(), Steps: len(p.o.Job.Stress),
		Min: stop.Min{Transactions: me.Transactions, IO: int64(me.IO), Ops: int64(me.Ops)}}
	for k, v := range p.o.Vars {
		cr.extra[k] = v
	}
	d := cr.do(ctx)
	if reason := cr.broken(d); reason != "" {
		// Whatever the machine went through, the next cell gets a fresh or reset one.
		p.release(ctx, reason)
	}
	p.progress(c.ID, rc.Verdict, start)
	return rc, d
}

// broken says why the machine must not be reused after this cell ("" when it can be).
func (cr *cellRun) broken(d verdict.Decision) string {
	switch {
	case cr.lost:
		return "connection lost"
	case d.Verdict == verdict.Crashed || d.Verdict == verdict.Hung:
		return cr.c.ID + ": " + d.Verdict
	case cr.hung || cr.crashed:
		return cr.c.ID + ": a step was stopped"
	case !cr.windowStart:
		return "kernel log unreadable"
	}
	for _, s := range cr.failed {
		if s.Phase == "setup" || s.Phase == "teardown" {
			return fmt.Sprintf("%s step %q failed", s.Phase, s.Name)
		}
	}
	return ""
}

// do runs the cell's phases and returns its verdict.
func (cr *cellRun) do(ctx context.Context) verdict.Decision {
	p, rc := cr.p, cr.rc
	rc.Kernel, rc.ImageHash, rc.Accel, rc.Runner = p.info.KernelRelease, p.info.ImageHash, p.info.Accel, p.info.Name
	rc.Replay = p.newCell(cr.c).Replay
	rc.Highmem = p.highmem

	// The window starts after the newest kernel-log record now.
	seq, err := cr.agentLast(ctx)
	if err != nil {
		cr.failed = append(cr.failed, verdict.Step{Phase: "collect", Name: "window start", Kind: verdict.FailError, Detail: err.Error()})
		if errors.Is(err, runner.ErrConnectionLost) {
			cr.lost = true
		}
		return cr.judge(nil)
	}
	cr.windowStart = true
	cr.follow = startFollower(ctx, cr.r, cr.agentPath(), seq, filepath.Join(rc.LogDir, "kern.log"), cr.onDivergence)
	cr.watch = startWatcher(cr.r, cr.follow)
	defer cr.watch.stop()

	to := p.o.Job.Timeouts
	cr.phase(ctx, "setup", p.o.Job.Setup, to.Setup.D(90*time.Second))
	if cr.setupOK() {
		cr.loadAddresses(ctx)
		sctx, cancel := context.WithCancel(ctx)
		cr.stopMu.Lock()
		cr.stopStress = cancel
		cr.stressStart = time.Now()
		cr.stopMu.Unlock()
		cr.stressKernUS = cr.kernelNow(ctx)
		cr.phase(sctx, "stress", p.o.Job.Stress, to.Stress.D(5*time.Minute))
		cancel()
		cr.stopMu.Lock()
		if cr.stopReason == "" {
			cr.stopReason, cr.stopAt = "stress finished", time.Now()
			if len(cr.sized) > 0 {
				cr.stopReason = cr.sizedReason + "; " + strings.Join(cr.sized, ", ")
			}
		}
		cr.stopMu.Unlock()
	}
	if !cr.lost && !cr.hung && !cr.crashed {
		cr.phase(ctx, "teardown", p.o.Job.Teardown, to.Setup.D(90*time.Second))
	}
	t := time.Now()
	p.progress(cr.c.ID, "collect", cr.start)
	cr.collect(ctx, to.Collect.D(90*time.Second))
	rc.Timings["collect"] = time.Since(t).Seconds()
	return cr.judge(cr.follow)
}

func (cr *cellRun) setupOK() bool {
	for _, s := range cr.failed {
		if s.Phase == "setup" {
			return false
		}
	}
	return !cr.lost && !cr.hung && !cr.crashed
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
func (cr *cellRun) loadAddresses(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cr.textAddrs = map[string]uint64{}
	for _, m := range cr.p.o.Job.Build.Modules {
		out, err := runner.Output(ctx, cr.r, "cat /sys/module/"+runner.Quote(m.Name)+"/sections/.text 2>/dev/null || true")
		if err != nil {
			return
		}
		if v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(out), "0x"), 16, 64); err == nil && v != 0 {
			cr.textAddrs[m.Name] = v
		}
	}
}
