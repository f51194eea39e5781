package run

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/console"
	"github.com/kmodlab/kmodlab/lab/kmsg"
	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/lab/verdict"
	"github.com/kmodlab/kmodlab/stressreport"
)

// follower streams the cell's kernel-log window from the machine as it is written:
// each record goes to the cell's kern.log, the trace oracle and the crash scanner at
// once, so the stop rule and the crash watcher see it within a fraction of a second,
// and nothing waits for a dump at the end.
type follower struct {
	mu      sync.Mutex
	cond    *sync.Cond
	win     *kmsg.Window
	an      *trace.Analyzer
	sc      console.Scanner
	out     *bufio.Writer
	file    *os.File
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	onDiv   func()
	stopped bool
	tapMu   sync.Mutex
	tap     *tapCapture // a kunit step's capture while it runs (ktap.go)
}

func startFollower(ctx context.Context, r runner.Runner, agent string, start uint64, file string, onDiv func()) *follower {
	f := &follower{win: kmsg.NewWindow(start), an: trace.NewAnalyzer(), done: make(chan struct{}), onDiv: onDiv}
	f.cond = sync.NewCond(&f.mu)
	f.an.OnDivergence = func(trace.Divergence) {
		if f.onDiv != nil {
			go f.onDiv()
		}
	}
	if fh, err := os.Create(file); err == nil {
		f.file, f.out = fh, bufio.NewWriterSize(fh, 256*1024)
	}
	fctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	pr, pw := io.Pipe()
	go func() {
		err := r.Run(fctx, fmt.Sprintf("%s follow -from %d", agent, start+1), pw, io.Discard)
		pw.CloseWithError(err)
	}()
	go func() {
		defer close(f.done)
		err := trace.ReadLines(pr, f.line, func() { f.line("") })
		f.mu.Lock()
		if err != nil && !errors.Is(err, context.Canceled) {
			f.err = err
		}
		f.stopped = true
		f.cond.Broadcast()
		f.mu.Unlock()
	}()
	return f
}

// line takes one record as the agent printed it.
func (f *follower) line(s string) {
	rec, err := kmsg.Parse(s)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.win.Bad++
		return
	}
	if !f.win.Add(rec) {
		return
	}
	l := rec.Line()
	if f.out != nil {
		f.out.WriteString(l)
		f.out.WriteByte('\n')
	}
	f.an.Record(rec.TS, rec.Text)
	f.sc.Line(l)
	f.tapMu.Lock()
	if f.tap != nil {
		f.tap.record(rec.Text)
	}
	f.tapMu.Unlock()
	f.cond.Broadcast()
}

// counts are the trace's counts so far (transactions still open are not in them).
func (f *follower) counts() trace.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.an.Snapshot()
}

func (f *follower) crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return crashIn(&f.sc)
}

// waitFor waits until record seq has arrived, the stream ended, or timeout.
func (f *follower) waitFor(seq uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
	defer t.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.win.Last() < seq && !f.stopped && time.Now().Before(deadline) {
		f.cond.Wait()
	}
	return f.win.Last() >= seq
}

// last is the newest record received.
func (f *follower) last() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.win.Last()
}

// stop ends the stream and returns what was found.
func (f *follower) stop() (*trace.Result, []console.Report, kmsg.Window) {
	f.cancel()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.out != nil {
		f.out.Flush()
		f.file.Close()
		f.out = nil
	}
	return f.an.Finish(), f.sc.Reports(), *f.win
}

// collect ends the kernel-log window and gathers the job's files.
func (cr *cellRun) collect(ctx context.Context, timeout time.Duration) {
	if cr.follow == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cr.lost && !cr.crashed {
		// The window ends at the newest record now; wait until the stream has
		// delivered it, or read the rest directly if the stream died.
		if end, err := cr.agentLast(cctx); err == nil {
			cr.windowEnd = end
			if !cr.follow.waitFor(end, 20*time.Second) {
				var b bytes.Buffer
				cmd := fmt.Sprintf("%s read -from %d -until %d", cr.agentPath(), cr.follow.last()+1, end)
				if err := cr.r.Run(cctx, cmd, &b, io.Discard); err == nil {
					trace.ReadLines(&b, cr.follow.line, func() {})
				}
			}
		} else if errors.Is(err, runner.ErrConnectionLost) {
			cr.lost = true
		}
	}
	if cr.lost || cr.crashed {
		return
	}
	j := cr.p.o.Job
	files := append([]string(nil), j.Collect...)
	for i, s := range j.Setup {
		if s.Background {
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("setup%d", i)
			}
			files = append(files, j.Dest()+"/"+name+".log")
		}
	}
	for _, f := range files {
		path, err := j.ExpandPath(f, cr.c, cr.p.o.Seed, cr.extra)
		if err != nil {
			continue
		}
		var b bytes.Buffer
		if err := cr.r.Fetch(cctx, path, &b); err == nil {
			os.WriteFile(filepath.Join(cr.rc.LogDir, filepath.Base(path)), b.Bytes(), 0o644)
		}
	}
}

// readStress fetches and reads a stress step's report. A report whose details have a
// shape the lab does not know is kept as it is; only its counts are read.
func (cr *cellRun) readStress(ctx context.Context, step, file string) {
	var buf bytes.Buffer
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	fail := func(detail string) {
		cr.failed = append(cr.failed, verdict.Step{Phase: "stress", Name: step, Kind: verdict.FailError,
			Detail: detail, Policy: verdict.PolicyInfra})
	}
	if err := cr.r.Fetch(fctx, file, &buf); err != nil {
		fail(fmt.Sprintf("stress report %s: %v", file, err))
		return
	}
	os.WriteFile(filepath.Join(cr.rc.LogDir, "stress-"+step+".json"), buf.Bytes(), 0o644)
	sr, err := stressreport.Parse(buf.Bytes())
	if err != nil {
		fail(fmt.Sprintf("stress report %s: %v", file, strings.TrimPrefix(err.Error(), "stress report: ")))
		return
	}
	cr.stress = append(cr.stress, verdict.Stress{Step: step, Report: sr})
}
