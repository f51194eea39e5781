package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/console"
)

// crashGrace is how long a crashing kernel may go on printing before the step under
// it is stopped.
const crashGrace = 3 * time.Second

// End is how a step left the machine; the worst end of a cell's steps decides what
// may still run on it.
type End int

// Ends of a step, least severe first.
const (
	Finished End = iota // the step ended by itself, well or not: the next may run
	TimedOut            // the step did not finish within its timeout
	Crashed             // the step was stopped because the kernel crashed under it
	Lost                // the connection to the machine was lost
)

// Usable says whether more steps may run on the machine.
func (e End) Usable() bool { return e == Finished }

// Steps is what a cell's steps did: their failures, the stress reports read, and how
// the last of them left the machine.
type Steps struct {
	Failed []verdict.Step
	Stress []verdict.Stress
	Tests  []verdict.Tests // KTAP steps' cases (ktap.go)
	End    End
}

// add takes one step's (or phase's) result.
func (s *Steps) add(r Steps) {
	s.Failed = append(s.Failed, r.Failed...)
	s.Stress = append(s.Stress, r.Stress...)
	s.Tests = append(s.Tests, r.Tests...)
	if r.End > s.End {
		s.End = r.End
	}
}

// setupOK says whether the setup phase left something to stress.
func (s Steps) setupOK() bool {
	for _, f := range s.Failed {
		if f.Phase == "setup" {
			return false
		}
	}
	return s.End.Usable()
}

// phase runs a phase's steps in order, stopping at a machine a step left unusable.
func (cr *cellRun) phase(ctx context.Context, name string, steps []job.Step, def time.Duration, prior []verdict.Stress) Steps {
	t := time.Now()
	cr.p.progress(cr.c.ID, name, cr.start)
	var out Steps
	for i, s := range steps {
		if !out.End.Usable() || ctx.Err() != nil || (name == "stress" && cr.stop.stoppedOnPurpose()) {
			break
		}
		out.add(cr.step(ctx, name, i, s, def, append(prior[:len(prior):len(prior)], out.Stress...)))
	}
	cr.rc.Timings[name] = time.Since(t).Seconds()
	return out
}

// step runs one step and says how it ended and what went wrong, with its stress
// report; prior are the stress reports read before it (for the stop rule).
func (cr *cellRun) step(ctx context.Context, phase string, i int, s job.Step, def time.Duration, prior []verdict.Stress) (out Steps) {
	j, c, seed := cr.p.o.Job, cr.c, cr.p.o.Seed
	name := s.Name
	if name == "" {
		name = fmt.Sprintf("%s%d", phase, i)
	}
	fail := func(kind, detail string) {
		st := verdict.Step{Phase: phase, Name: name, Kind: kind, Detail: detail}
		if phase == "stress" {
			st.Policy = s.FailurePolicy()
		}
		out.Failed = append(out.Failed, st)
	}
	cmd, err := j.Expand(s.Command(), c, seed, cr.extra)
	if err != nil {
		fail(verdict.FailError, err.Error())
		return out
	}
	timeout := s.Timeout.D(def)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var w io.Writer = io.Discard
	if logf, err := os.Create(filepath.Join(cr.rc.LogDir, phase+"-"+name+".log")); err == nil {
		defer logf.Close()
		fmt.Fprintf(logf, "$ %s\n", cmd)
		w = logf
	}
	report := ""
	if s.Report != "" {
		if report, err = j.ExpandPath(s.Report, c, seed, cr.extra); err != nil {
			fail(verdict.FailError, err.Error())
			return out
		}
		cr.r.Run(sctx, "rm -f "+runner.Quote(report), nil, nil) // never read a previous cell's report
	}
	// A kernel crash during the step: give the kernel a moment to print the rest, then
	// stop waiting for a step that may never finish.
	crashed := cr.watch.stopOnCrash(sctx, cancel)
	tap := cr.beginKTAP(s, name)
	if s.Background {
		bg := fmt.Sprintf("setsid sh -c %s > %s/%s.log 2>&1 < /dev/null &", runner.Quote(cmd), j.Dest(), name)
		err = cr.r.Run(sctx, bg, w, w)
		if err == nil && s.Ready != "" {
			ready, _ := j.Expand(s.Ready, c, seed, cr.extra)
			err = poll(sctx, cr.r, ready)
		}
	} else if phase == "stress" {
		// Remember the step's process, so a step the lab stops (a sure verdict, a
		// timeout) is killed on the machine too and does not hold the device during
		// teardown.
		pidfile := fmt.Sprintf("%s/.kmodlab-step-%s.pid", j.Dest(), name)
		end := cr.stop.begin(i, name, pidfile, prior)
		pw := &progressWriter{w: w, on: cr.stop.onProgress}
		err = cr.r.Run(sctx, stepCommand(pidfile, cmd), tap.stdout(pw), pw)
		end()
		if sctx.Err() != nil && !crashed() {
			kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			cr.r.Run(kctx, killCommand(pidfile), nil, nil)
			kcancel()
		}
	} else {
		err = cr.r.Run(sctx, cmd, tap.stdout(w), w)
	}
	if !errors.Is(err, runner.ErrConnectionLost) {
		if t := cr.endKTAP(ctx, tap); t != nil {
			out.Tests = append(out.Tests, *t)
		}
	}
	stoppedOnPurpose := phase == "stress" && ctx.Err() != nil && cr.stop.stoppedOnPurpose()
	switch {
	case err == nil || stoppedOnPurpose:
	case errors.Is(err, runner.ErrConnectionLost):
		out.End = Lost
		fail(verdict.FailLost, err.Error())
	case crashed():
		out.End = Crashed
		if phase == "stress" {
			cr.stop.crashed()
		}
		fail(verdict.FailCrashed, "stopped: the kernel crashed under it")
	case sctx.Err() != nil && ctx.Err() == nil:
		out.End = TimedOut
		fail(verdict.FailTimeout, fmt.Sprintf("did not finish within %s", timeout))
	case ctx.Err() != nil:
		// The run itself was cancelled (Ctrl-C): the lab could not judge.
		out.Failed = append(out.Failed, verdict.Step{Phase: phase, Name: name, Kind: verdict.FailError,
			Detail: "cancelled: " + ctx.Err().Error(), Policy: verdict.PolicyInfra})
	case !s.IgnoreFail:
		fail(verdict.FailExit, err.Error())
	}
	if report != "" && out.End != Lost && out.End != Crashed && !stoppedOnPurpose && ctx.Err() == nil {
		st, bad := cr.readStress(ctx, name, report)
		if bad != nil {
			out.Failed = append(out.Failed, *bad)
		} else {
			out.Stress = append(out.Stress, st)
		}
	}
	return out
}

// stepCommand runs a stress step's command in a session of its own (setsid; busybox
// and util-linux have it), whose id goes into pidfile, so killCommand reaches every
// process the step started, however deep (pkill -P reached only the shell's
// children). The session leader is started in the background and waited for: a
// background child is never a process group leader, so setsid starts the session in
// that process instead of forking and returning at once. Without setsid the step runs
// as before, in the shell's group.
func stepCommand(pidfile, cmd string) string {
	inner := runner.Quote(`echo $$ > "$0" && exec sh -c "$1"`)
	return fmt.Sprintf(`s=; command -v setsid >/dev/null 2>&1 && s=setsid; $s sh -c %s %s %s & wait $!`, inner, runner.Quote(pidfile), runner.Quote(cmd))
}

// killCommand kills a step started by stepCommand: its process group and its session,
// then (no setsid) the leader's children and the leader; it removes pidfile.
func killCommand(pidfile string) string {
	return fmt.Sprintf("p=$(cat %[1]s 2>/dev/null) && { kill -KILL -- -$p 2>/dev/null || kill -KILL -$p 2>/dev/null; pkill -KILL -s $p 2>/dev/null; pkill -KILL -P $p; kill -KILL $p; }; rm -f %[1]s", runner.Quote(pidfile))
}

func poll(ctx context.Context, r runner.Runner, cmd string) error {
	for {
		err := r.Run(ctx, cmd, nil, nil)
		if err == nil {
			return nil
		}
		if errors.Is(err, runner.ErrConnectionLost) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ready check %q never succeeded: %w", cmd, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// watcher reads the machine's own log (a guest's serial console, a board's followed
// log) as it grows, only the new part each time, and with the kernel-log follower
// tells whether the kernel crashed.
type watcher struct {
	r       runner.Runner
	log     runner.Log
	follow  *follower
	mu      sync.Mutex
	sc      console.Scanner
	off     int
	partial string
	text    strings.Builder // the console since the cell began (bounded)
	done    chan struct{}
	once    sync.Once
}

const maxConsole = 8 << 20

func startWatcher(r runner.Runner, f *follower) *watcher {
	l := r.Log()
	w := &watcher{r: r, log: l, follow: f, done: make(chan struct{})}
	if l != nil {
		w.off = l.Len()
		go w.loop()
	}
	return w
}

func (w *watcher) loop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
			w.poll()
		}
	}
}

// poll scans what the log gained since the last poll.
func (w *watcher) poll() {
	if w.log == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.log.Len()
	if n <= w.off {
		return
	}
	s := w.log.Since(w.off)
	w.off = n
	if w.text.Len() < maxConsole {
		w.text.WriteString(s)
	}
	s = w.partial + s
	lines := strings.Split(s, "\n")
	w.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		w.sc.Line(strings.TrimRight(l, "\r"))
	}
}

// fatal reports whether the console or the kernel log shows a crash (hangs are left
// to the step's timeout and the verdict).
func (w *watcher) fatal() bool {
	w.mu.Lock()
	c := crashIn(&w.sc)
	w.mu.Unlock()
	return c || (w.follow != nil && w.follow.crashed()) || w.panicked()
}

// panicked reports the machine's own panic signal (pvpanic), where it has one.
func (w *watcher) panicked() bool {
	p, ok := w.r.(runner.Panicker)
	return ok && p.Panicked()
}

func crashIn(sc *console.Scanner) bool {
	if !sc.Fatal() {
		return false
	}
	for _, r := range sc.Peek() {
		if r.Kind != console.KindWarning && !r.Hang() {
			return true
		}
	}
	return false
}

// stopOnCrash cancels a step crashGrace after the kernel crashes under it; the
// returned func says whether it did.
func (w *watcher) stopOnCrash(ctx context.Context, cancel context.CancelFunc) func() bool {
	var mu sync.Mutex
	did := false
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.done:
				return
			case <-t.C:
				if !w.fatal() {
					continue
				}
				select {
				case <-ctx.Done():
				case <-time.After(crashGrace):
					mu.Lock()
					did = true
					mu.Unlock()
					cancel()
				}
				return
			}
		}
	}()
	return func() bool { mu.Lock(); defer mu.Unlock(); return did }
}

// consoleText is what the console printed during the cell.
func (w *watcher) consoleText() string {
	w.poll()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.text.String()
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }
