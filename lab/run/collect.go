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

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Collected is everything a cell brought back from its machine, however it ran: the
// judging (judge.go) reads nothing else. An interactive cell's collect builds it from
// the followed kernel log and the watched console; a batch cell builds it from what
// its job returned (a runner.CellLog), with newKernelLog and parseStress.
type Collected struct {
	Steps                       // the steps' failures and stress reports, how they ended
	Lost      bool              // the connection to the machine was lost (in a step or after)
	Kernel    KernelLog         // the cell's kernel-log window
	Console   string            // what the machine's console printed during the cell
	Panicked  bool              // the machine's own panic signal (pvpanic) fired
	TextAddrs map[string]uint64 // module -> .text load address, for symbolizing
	Stop      Stopped           // when and why stress stopped
}

// KernelLog is what a cell's kernel-log window held.
type KernelLog struct {
	Window  *kmsg.Window     // nil: the window's start could not be read
	Trace   *trace.Result    // the trace oracle's result over it
	Reports []console.Report // crash reports and warnings in it
}

// kernelLog reads a window's records as the kernel-log agent prints them, one line
// each: into the window's counts, the trace oracle and the crash scanner. The follower
// streams into one; a batch cell feeds its job's whole log to one.
type kernelLog struct {
	win *kmsg.Window
	an  *trace.Analyzer
	sc  console.Scanner
	tap *tapCapture // a kunit step's capture while it runs (ktap.go), under the follower's mu
}

// newKernelLog reads a window that starts after record start.
func newKernelLog(start uint64) *kernelLog {
	return &kernelLog{win: kmsg.NewWindow(start), an: trace.NewAnalyzer()}
}

// record takes one line; it returns the record as kern.log shows it, false for a line
// that is no record of the window.
func (k *kernelLog) record(s string) (string, bool) {
	rec, err := kmsg.Parse(s)
	if err != nil {
		k.win.Bad++
		return "", false
	}
	if !k.win.Add(rec) {
		return "", false
	}
	l := rec.Line()
	k.an.Record(rec.TS, rec.Text)
	k.sc.Line(l)
	if k.tap != nil {
		k.tap.record(rec.Text)
	}
	return l, true
}

// result ends the window at record end (0: at the last record read).
func (k *kernelLog) result(end uint64) KernelLog {
	w := *k.win // the report's copy
	w.End = end
	if w.End == 0 {
		w.End = w.Last()
	}
	return KernelLog{Window: &w, Trace: k.an.Finish(), Reports: k.sc.Reports()}
}

// follower streams the cell's kernel-log window from the machine as it is written:
// each record goes to the cell's kern.log, the trace oracle and the crash scanner at
// once, so the stop rule and the crash watcher see it within a fraction of a second,
// and nothing waits for a dump at the end.
type follower struct {
	mu      sync.Mutex
	cond    *sync.Cond
	log     *kernelLog
	out     *bufio.Writer
	file    *os.File
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	onDiv   func()
	stopped bool
}

func startFollower(ctx context.Context, r runner.Runner, agent string, start uint64, file string, onDiv func()) *follower {
	f := &follower{log: newKernelLog(start), done: make(chan struct{}), onDiv: onDiv}
	f.cond = sync.NewCond(&f.mu)
	f.log.an.OnDivergence = func(trace.Divergence) {
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
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.log.record(s)
	if !ok {
		return
	}
	if f.out != nil {
		f.out.WriteString(l)
		f.out.WriteByte('\n')
	}
	f.cond.Broadcast()
}

// setTap hands the kernel log's records to a kunit step's capture (nil: stop).
func (f *follower) setTap(t *tapCapture) {
	f.mu.Lock()
	f.log.tap = t
	f.mu.Unlock()
}

// counts are the trace's counts so far (transactions still open are not in them).
func (f *follower) counts() trace.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log.an.Snapshot()
}

func (f *follower) crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return crashIn(&f.log.sc)
}

// waitFor waits until record seq has arrived, the stream ended, or timeout.
func (f *follower) waitFor(seq uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
	defer t.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.log.win.Last() < seq && !f.stopped && time.Now().Before(deadline) {
		f.cond.Wait()
	}
	return f.log.win.Last() >= seq
}

// last is the newest record received.
func (f *follower) last() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log.win.Last()
}

// stop ends the stream and returns what the window held, ending it at record end
// (0: at the last record received).
func (f *follower) stop(end uint64) KernelLog {
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
	return f.log.result(end)
}

// collect ends the kernel-log window, gathers the job's files and the console, and
// returns all the cell brought back; steps is what its steps did.
func (cr *cellRun) collect(ctx context.Context, timeout time.Duration, steps Steps, stopped Stopped, textAddrs map[string]uint64) Collected {
	col := Collected{Steps: steps, Lost: steps.End == Lost, Stop: stopped, TextAddrs: textAddrs}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var end uint64
	if !col.Lost && steps.End != Crashed {
		// The window ends at the newest record now; wait until the stream has
		// delivered it, or read the rest directly if the stream died.
		if last, err := cr.agentLast(cctx); err == nil {
			end = last
			if !cr.follow.waitFor(end, 20*time.Second) {
				var b bytes.Buffer
				cmd := fmt.Sprintf("%s read -from %d -until %d", cr.agentPath(), cr.follow.last()+1, end)
				if err := cr.r.Run(cctx, cmd, &b, io.Discard); err == nil {
					trace.ReadLines(&b, cr.follow.line, func() {})
				}
			}
		} else if errors.Is(err, runner.ErrConnectionLost) {
			col.Lost = true
		}
	}
	if !col.Lost && steps.End != Crashed {
		cr.fetchFiles(cctx)
	}
	col.Console = cr.watch.consoleText()
	if col.Console != "" {
		os.WriteFile(filepath.Join(cr.rc.LogDir, "console.log"), []byte(col.Console), 0o644)
	}
	col.Panicked = cr.watch.panicked()
	col.Kernel = cr.follow.stop(end)
	return col
}

// fetchFiles copies the job's files (collect:, background steps' logs) into the
// cell's log directory.
func (cr *cellRun) fetchFiles(ctx context.Context) {
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
		if err := cr.r.Fetch(ctx, path, &b); err == nil {
			os.WriteFile(filepath.Join(cr.rc.LogDir, filepath.Base(path)), b.Bytes(), 0o644)
		}
	}
}

// stressFetchTries is how often a stress report's fetch is tried: under load a guest's
// scp once ended a transfer early (EOF) and made a clean i386 cell INFRA. Fetching is
// idempotent, so a failed copy is tried again; a lost connection is not retried.
const stressFetchTries = 3

// readStress fetches a stress step's report, keeps it in the cell's logs and reads it
// (parseStress); a report that cannot be fetched or read is a failed step.
func (cr *cellRun) readStress(ctx context.Context, step, file string) (verdict.Stress, *verdict.Step) {
	var buf bytes.Buffer
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	tries := 0
	for tries < stressFetchTries && fctx.Err() == nil {
		if tries > 0 {
			select {
			case <-fctx.Done():
			case <-time.After(time.Duration(tries) * 500 * time.Millisecond):
			}
		}
		tries++
		buf.Reset()
		if err = cr.r.Fetch(fctx, file, &buf); err == nil || errors.Is(err, runner.ErrConnectionLost) {
			break
		}
	}
	if err != nil {
		return verdict.Stress{}, badStress(step, fmt.Sprintf("stress report %s: %v (%d tries)", file, err, tries))
	}
	os.WriteFile(filepath.Join(cr.rc.LogDir, "stress-"+step+".json"), buf.Bytes(), 0o644)
	return parseStress(step, file, buf.Bytes())
}

// parseStress reads a stress step's report (file is its path on the machine, for the
// message). A report whose details have a shape the lab does not know is kept as it
// is; only its counts are read.
func parseStress(step, file string, data []byte) (verdict.Stress, *verdict.Step) {
	sr, err := stressreport.Parse(data)
	if err != nil {
		return verdict.Stress{}, badStress(step, fmt.Sprintf("stress report %s: %v", file, strings.TrimPrefix(err.Error(), "stress report: ")))
	}
	return verdict.Stress{Step: step, Report: sr}, nil
}

// badStress is a stress report that could not be read: the lab could not judge.
func badStress(step, detail string) *verdict.Step {
	return &verdict.Step{Phase: "stress", Name: step, Kind: verdict.FailError, Detail: detail, Policy: verdict.PolicyInfra}
}
