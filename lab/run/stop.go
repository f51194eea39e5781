package run

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/stop"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/stressreport"
)

// The stop rule's stage: while a stress step runs, the evidence streamed so far (the
// follower's trace counts, the finished steps' reports, the running tool's progress
// lines) goes to stop.Rule, and the step is ended as it says. A sure verdict ends the
// whole stress phase; enough evidence ends the step (its tool is asked to finish and
// write its report) and the next step runs for its own share.

// graceGraceful is how long a tool that stops cleanly gets to write its report after
// a sure verdict before the lab kills it.
const graceGraceful = 2 * time.Second

// stressStep is the stress step running now.
type stressStep struct {
	name     string
	index    int
	pidfile  string
	atStart  stop.Evidence
	started  time.Time
	progress stressreport.Progress
	graceful bool // it printed a progress line
	stopping bool
}

// stopper is where the stop rule stands while a cell's stress runs: written by the
// step runner and by the streams' callbacks (onProgress, onDivergence), so behind mu.
// It is the cell's only shared state; finish hands back what it decided as a value.
type stopper struct {
	r    runner.Runner // to ask a step's tool to finish
	rule stop.Rule

	mu          sync.Mutex
	counts      func() trace.Result // the kernel log's trace counts so far, nil before the window
	prior       []verdict.Stress    // the finished stress steps' reports
	cancel      context.CancelFunc  // ends the running stress step at once
	started     time.Time           // when the stress phase began (zero: it never did)
	kernelUS    int64               // the kernel's clock then (µs), -1 unknown
	reason      string              // why stress was stopped ("" while it runs)
	sure        bool                // it was stopped for a sure verdict (stop.Decision.Sure)
	at          time.Time           // when
	cur         *stressStep         // the stress step running now, nil between steps
	sized       []string            // stress steps stopped for enough evidence, and when
	sizedReason string              // the last such stop's reason
}

// Stopped is when and why a cell's stress phase ended, for the report.
type Stopped struct {
	KernelUS int64  // the kernel's clock when stress started (µs), -1 unknown
	MS       int64  // ms after stress started that it stopped, -1: stress never ran
	Reason   string // "stress finished", a sure verdict's reason, "the kernel crashed", …
}

// notRun is the Stopped of a cell whose stress never started.
var notRun = Stopped{KernelUS: -1, MS: -1}

func newStopper(r runner.Runner, rule stop.Rule) *stopper {
	return &stopper{r: r, rule: rule, kernelUS: -1}
}

// follow gives the stopper the kernel log's trace counts.
func (st *stopper) follow(counts func() trace.Result) {
	st.mu.Lock()
	st.counts = counts
	st.mu.Unlock()
}

// start marks the start of the stress phase; cancel ends it at once.
func (st *stopper) start(cancel context.CancelFunc) {
	st.mu.Lock()
	st.cancel, st.started = cancel, time.Now()
	st.mu.Unlock()
}

// kernelClock records the kernel's clock at the stress phase's start.
func (st *stopper) kernelClock(us int64) {
	st.mu.Lock()
	st.kernelUS = us
	st.mu.Unlock()
}

// finish ends the stress phase and says when and why it stopped.
func (st *stopper) finish() Stopped {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.started.IsZero() {
		return notRun
	}
	if st.reason == "" {
		st.reason, st.at = "stress finished", time.Now()
		if len(st.sized) > 0 {
			st.reason = st.sizedReason + "; " + strings.Join(st.sized, ", ")
		}
	}
	return Stopped{KernelUS: st.kernelUS, MS: st.at.Sub(st.started).Milliseconds(), Reason: st.reason}
}

// crashed records that the kernel crashed under a stress step.
func (st *stopper) crashed() {
	st.mu.Lock()
	if st.reason == "" {
		st.reason, st.at = "the kernel crashed", time.Now()
	}
	st.mu.Unlock()
}

// evidence is the cell's evidence now (mu held).
func (st *stopper) evidence() stop.Evidence {
	var ev stop.Evidence
	if st.counts != nil {
		tr := st.counts()
		ev.Diverged, ev.Transactions, ev.Integrity = tr.DivergedTotal, tr.Reads+tr.Writes, tr.IntegrityTotal
	}
	t := verdict.Sum(st.prior)
	if s := st.cur; s != nil {
		t.Add(s.progress)
	}
	ev.IO, ev.Ops, ev.IOErrors, ev.Mismatches = t.IO(), t.Ops, t.IOErrors, int64(t.Mismatches)
	return ev
}

// begin marks the start of a stress step, after the steps whose reports are prior, and
// watches it until the returned func is called (when the step's command has returned).
func (st *stopper) begin(index int, name, pidfile string, prior []verdict.Stress) (end func()) {
	st.mu.Lock()
	st.prior = prior
	st.cur = &stressStep{name: name, index: index, pidfile: pidfile, started: time.Now()}
	st.cur.atStart = st.evidence()
	st.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				st.evaluate()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		st.mu.Lock()
		st.cur = nil
		st.mu.Unlock()
	}
}

// onProgress takes a progress line of the running step's tool.
func (st *stopper) onProgress(p stressreport.Progress) {
	st.mu.Lock()
	if st.cur != nil {
		st.cur.progress, st.cur.graceful = p, true
	}
	st.mu.Unlock()
	st.evaluate()
}

// onDivergence is called as the trace confirms a divergence.
func (st *stopper) onDivergence() { st.evaluate() }

// evaluate applies the stop rule to the running step and acts on it.
func (st *stopper) evaluate() {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.cur
	if s == nil || s.stopping || st.cancel == nil || st.reason != "" {
		return
	}
	d := st.rule.Decide(stop.Step{Index: s.index, AtStart: s.atStart, Now: st.evidence(), Graceful: s.graceful})
	if !d.Stop {
		return
	}
	s.stopping = true
	if d.Sure {
		st.reason, st.at, st.sure = d.Reason, time.Now(), true
		if !s.graceful {
			st.cancel()
			return
		}
		// Let the tool write its report (its data evidence), but not for long.
		go st.terminate(s.pidfile)
		time.AfterFunc(graceGraceful, st.cancel)
		return
	}
	st.sized = append(st.sized, fmt.Sprintf("%s after %.1f s", s.name, time.Since(s.started).Seconds()))
	st.sizedReason = d.Reason
	go st.terminate(s.pidfile)
}

// terminate asks a stress step's tool to finish: SIGTERM to the step shell's children,
// or to the step's process itself when the shell exec'd the tool.
func (st *stopper) terminate(pidfile string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st.r.Run(ctx, fmt.Sprintf("p=$(cat %s 2>/dev/null) && { pkill -TERM -P $p || kill -TERM $p; }", runner.Quote(pidfile)), nil, nil)
}

// stoppedOnPurpose says whether stress was stopped by a sure verdict.
func (st *stopper) stoppedOnPurpose() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sure
}

// progressWriter passes a step's output through and hands its progress lines on.
type progressWriter struct {
	w       io.Writer
	partial []byte
	on      func(stressreport.Progress)
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	pw.w.Write(b)
	pw.partial = append(pw.partial, b...)
	for {
		i := bytes.IndexByte(pw.partial, '\n')
		if i < 0 {
			break
		}
		if p, ok := stressreport.ParseProgress(string(pw.partial[:i])); ok {
			pw.on(p)
		}
		pw.partial = pw.partial[i+1:]
	}
	if len(pw.partial) > 64<<10 { // no newline in sight: not a progress line
		pw.partial = pw.partial[:0]
	}
	return len(b), nil
}
