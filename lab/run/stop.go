package run

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/lab/stop"
	"github.com/kmodlab/kmodlab/lab/verdict"
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

// stopState is where the stop rule stands while a cell's stress runs: written by the
// step runner and by the streams' callbacks (onProgress, onDivergence), so behind mu.
type stopState struct {
	mu            sync.Mutex
	cancel        context.CancelFunc // ends the running stress step at once
	reason        string             // why stress was stopped early ("" while it runs)
	sure          bool               // it was stopped for a sure verdict (stop.Decision.Sure)
	at            time.Time          // when
	firstDiverged time.Time
	cur           *stressStep // the stress step running now, nil between steps
	sized         []string    // stress steps stopped for enough evidence, and when
	sizedReason   string      // the last such stop's reason
}

// evidence is the cell's evidence now (st.mu held).
func (cr *cellRun) evidence() stop.Evidence {
	var ev stop.Evidence
	if cr.follow != nil {
		tr := cr.follow.counts()
		ev.Diverged, ev.Transactions, ev.Integrity = tr.DivergedTotal, tr.Reads+tr.Writes, tr.IntegrityTotal
	}
	t := verdict.Sum(cr.stress)
	if s := cr.st.cur; s != nil {
		t.Add(s.progress)
	}
	ev.IO, ev.Ops, ev.IOErrors, ev.Mismatches = t.IO(), t.Ops, t.IOErrors, int64(t.Mismatches)
	return ev
}

// beginStress marks the start of a stress step and watches it until the returned func
// is called (when the step's command has returned).
func (cr *cellRun) beginStress(index int, name, pidfile string) (end func()) {
	cr.st.mu.Lock()
	cr.st.cur = &stressStep{name: name, index: index, pidfile: pidfile, started: time.Now()}
	cr.st.cur.atStart = cr.evidence()
	cr.st.mu.Unlock()
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
				cr.evaluate()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		cr.st.mu.Lock()
		cr.st.cur = nil
		cr.st.mu.Unlock()
	}
}

// onProgress takes a progress line of the running step's tool.
func (cr *cellRun) onProgress(p stressreport.Progress) {
	cr.st.mu.Lock()
	if cr.st.cur != nil {
		cr.st.cur.progress, cr.st.cur.graceful = p, true
	}
	cr.st.mu.Unlock()
	cr.evaluate()
}

// onDivergence is called as the trace confirms a divergence.
func (cr *cellRun) onDivergence() {
	cr.st.mu.Lock()
	if cr.st.firstDiverged.IsZero() {
		cr.st.firstDiverged = time.Now()
	}
	cr.st.mu.Unlock()
	cr.evaluate()
}

// evaluate applies the stop rule to the running step and acts on it.
func (cr *cellRun) evaluate() {
	cr.st.mu.Lock()
	defer cr.st.mu.Unlock()
	s := cr.st.cur
	if s == nil || s.stopping || cr.st.cancel == nil || cr.st.reason != "" {
		return
	}
	d := cr.rule.Decide(stop.Step{Index: s.index, AtStart: s.atStart, Now: cr.evidence(), Graceful: s.graceful})
	if !d.Stop {
		return
	}
	s.stopping = true
	if d.Sure {
		cr.st.reason, cr.st.at, cr.st.sure = d.Reason, time.Now(), true
		if !s.graceful {
			cr.st.cancel()
			return
		}
		// Let the tool write its report (its data evidence), but not for long.
		go cr.terminate(s.pidfile)
		time.AfterFunc(graceGraceful, cr.st.cancel)
		return
	}
	cr.st.sized = append(cr.st.sized, fmt.Sprintf("%s after %.1f s", s.name, time.Since(s.started).Seconds()))
	cr.st.sizedReason = d.Reason
	go cr.terminate(s.pidfile)
}

// terminate asks a stress step's tool to finish: SIGTERM to the step shell's children,
// or to the step's process itself when the shell exec'd the tool.
func (cr *cellRun) terminate(pidfile string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cr.r.Run(ctx, fmt.Sprintf("p=$(cat %s 2>/dev/null) && { pkill -TERM -P $p || kill -TERM $p; }", runner.Quote(pidfile)), nil, nil)
}

// stoppedOnPurpose says whether stress was stopped by a sure verdict.
func (cr *cellRun) stoppedOnPurpose() bool {
	cr.st.mu.Lock()
	defer cr.st.mu.Unlock()
	return cr.st.sure
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
