package run

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/lab/stop"
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

// evidence is the cell's evidence now (stopMu held).
func (cr *cellRun) evidence() stop.Evidence {
	var ev stop.Evidence
	if cr.follow != nil {
		tr := cr.follow.counts()
		ev.Diverged, ev.Transactions, ev.Integrity = tr.DivergedTotal, tr.Reads+tr.Writes, tr.IntegrityTotal
	}
	for _, s := range cr.stress {
		ev.IO += s.Report.Reads + s.Report.Writes
		ev.Ops += s.Report.Ops
		ev.IOErrors += s.Report.IOErrors
		ev.Mismatches += int64(s.Report.Mismatches)
	}
	if s := cr.cur; s != nil {
		p := s.progress
		ev.IO += p.Reads + p.Writes
		ev.Ops += p.Ops
		ev.IOErrors += p.IOErrors
		ev.Mismatches += int64(p.Mismatches)
	}
	return ev
}

// beginStress marks the start of a stress step and watches it until the returned func
// is called (when the step's command has returned).
func (cr *cellRun) beginStress(index int, name, pidfile string) (end func()) {
	cr.stopMu.Lock()
	cr.cur = &stressStep{name: name, index: index, pidfile: pidfile, started: time.Now()}
	cr.cur.atStart = cr.evidence()
	cr.stopMu.Unlock()
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
		cr.stopMu.Lock()
		cr.cur = nil
		cr.stopMu.Unlock()
	}
}

// onProgress takes a progress line of the running step's tool.
func (cr *cellRun) onProgress(p stressreport.Progress) {
	cr.stopMu.Lock()
	if cr.cur != nil {
		cr.cur.progress, cr.cur.graceful = p, true
	}
	cr.stopMu.Unlock()
	cr.evaluate()
}

// onDivergence is called as the trace confirms a divergence.
func (cr *cellRun) onDivergence() {
	cr.stopMu.Lock()
	if cr.firstDiverged.IsZero() {
		cr.firstDiverged = time.Now()
	}
	cr.stopMu.Unlock()
	cr.evaluate()
}

// evaluate applies the stop rule to the running step and acts on it.
func (cr *cellRun) evaluate() {
	cr.stopMu.Lock()
	defer cr.stopMu.Unlock()
	s := cr.cur
	if s == nil || s.stopping || cr.stopStress == nil || cr.stopReason != "" {
		return
	}
	d := cr.rule.Decide(stop.Step{Index: s.index, AtStart: s.atStart, Now: cr.evidence(), Graceful: s.graceful})
	if !d.Stop {
		return
	}
	s.stopping = true
	if d.Sure {
		cr.stopReason, cr.stopAt = d.Reason, time.Now()
		if !s.graceful {
			cr.stopStress()
			return
		}
		// Let the tool write its report (its data evidence), but not for long.
		go cr.terminate(s.pidfile)
		time.AfterFunc(graceGraceful, cr.stopStress)
		return
	}
	cr.sized = append(cr.sized, fmt.Sprintf("%s after %.1f s", s.name, time.Since(s.started).Seconds()))
	cr.sizedReason = d.Reason
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
	cr.stopMu.Lock()
	defer cr.stopMu.Unlock()
	return strings.HasPrefix(cr.stopReason, "sure verdict")
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
