package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/stressreport"
)

// The pipeline against a fake machine: a kernel log with sequence numbers that the
// steps write into, files, and commands scripted per test. Each test is one of the
// ways the old pipeline let a false verdict through.

var cacheDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "kmodlab-run-test-")
	if err != nil {
		panic(err)
	}
	cacheDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// fake is one machine.
type fake struct {
	mu      sync.Mutex
	cond    *sync.Cond
	seq     uint64
	records []string // "pri,seq,ts,-;text"
	files   map[string][]byte
	steps   map[string]func(ctx context.Context, f *fake) error // matched by substring of the command
	// stepsOut are steps that print to their stdout, matched the same way.
	stepsOut map[string]func(ctx context.Context, f *fake, stdout io.Writer) error
	highmem  bool
	canary   string // the canary's line, "" = insmod fails
	lastErr  error  // returned by "kmodlab-kmsg last"
	closed   int
	ts       int64
}

func newFake() *fake {
	f := &fake{files: map[string][]byte{}, steps: map[string]func(context.Context, *fake) error{}, seq: 41}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// printk adds kernel log records; skip leaves a gap (records the ring buffer lost).
func (f *fake) printk(skip int, lines ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq += uint64(skip)
	for _, l := range lines {
		f.seq++
		f.ts += 1000
		f.records = append(f.records, fmt.Sprintf("6,%d,%d,-;%s", f.seq, 100_000_000+f.ts, l))
	}
	f.cond.Broadcast()
}

func (f *fake) Info() runner.Info {
	return runner.Info{Name: "fake", Kind: "fake", GOARCH: "amd64", KernelRelease: "6.1.0-fake"}
}

func (f *fake) Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error {
	if stdout == nil {
		stdout = io.Discard
	}
	switch {
	case strings.Contains(cmd, "kmodlab-kmsg last"):
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.lastErr != nil {
			return f.lastErr
		}
		fmt.Fprintln(stdout, f.seq)
		return nil
	case strings.Contains(cmd, "kmodlab-kmsg follow"):
		var from uint64
		fmt.Sscanf(cmd[strings.Index(cmd, "-from"):], "-from %d", &from)
		go func() { <-ctx.Done(); f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() }()
		i := 0
		for {
			f.mu.Lock()
			for i >= len(f.records) && ctx.Err() == nil {
				f.cond.Wait()
			}
			if ctx.Err() != nil {
				f.mu.Unlock()
				return ctx.Err()
			}
			rec := f.records[i]
			f.mu.Unlock()
			i++
			var s uint64
			fmt.Sscanf(rec, "6,%d,", &s)
			if s >= from {
				fmt.Fprintln(stdout, rec)
			}
		}
	case strings.Contains(cmd, "kmodlab-kmsg read"):
		return nil
	case strings.Contains(cmd, "HighTotal"):
		if f.highmem {
			fmt.Fprintln(stdout, "HighTotal:       2359296 kB")
		}
		return nil
	case strings.Contains(cmd, "kmodlab_canary.ko"):
		if f.canary == "" {
			return &runner.ExitError{Cmd: cmd, Status: 1}
		}
		fmt.Fprintln(stdout, f.canary)
		return nil
	case strings.Contains(cmd, "/proc/uptime"):
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprintf(stdout, "%d.%02d 1.00\n", (100_000_000+f.ts)/1_000_000, (100_000_000+f.ts)%1_000_000/10000)
		return nil
	}
	for k, fn := range f.stepsOut {
		if strings.Contains(cmd, k) {
			return fn(ctx, f, stdout)
		}
	}
	for k, fn := range f.steps {
		if strings.Contains(cmd, k) {
			return fn(ctx, f)
		}
	}
	return nil // mkdir, rm, cat /sys/module, teardown …
}

func (f *fake) Copy(ctx context.Context, local, remote string, mode os.FileMode) error { return nil }

func (f *fake) Fetch(ctx context.Context, remote string, w io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.files[remote]
	if !ok {
		return fmt.Errorf("%s: no such file", remote)
	}
	_, err := w.Write(data)
	return err
}

func (f *fake) Log() runner.Log { return nil }
func (f *fake) Close() error    { f.closed++; return nil }

// report writes a stress report on the fake machine.
func (f *fake) report(path string, r stressreport.Report) {
	data, _ := json.Marshal(r)
	f.mu.Lock()
	f.files[path] = data
	f.mu.Unlock()
}

type noBuild struct{}

func (noBuild) Name() string { return "none" }
func (noBuild) Prepare(ctx context.Context, name, src string) (string, error) {
	return "h-" + name, nil
}
func (noBuild) Install(ctx context.Context, r runner.Runner, name, src, dest string) (string, error) {
	return "", nil
}

type machines struct{ f *fake }

func (m machines) Describe(string) (runner.Info, error) { return m.f.Info(), nil }
func (m machines) Strategy(context.Context, string, string, bool) (build.Strategy, error) {
	return noBuild{}, nil
}
func (m machines) Acquire(context.Context, string, string) (runner.Runner, error) { return m.f, nil }

const testJob = `name: t
targets: [fake]
matrix: {mode: [a]}
build: {modules: [{name: userblk, dir: .}]}
setup: [{name: insmod, run: insmod-step}]
stress: [{name: io, run: stress-step, report: /root/s.json}]
teardown: [{name: rmmod, run: rmmod-step}]
expect:
  default: clean
  min_evidence: {transactions: 4, io: 10}
`

func runJob(t *testing.T, f *fake, jobText string, o Options) *report.Run {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yaml")
	os.WriteFile(file, []byte(jobText), 0o644)
	j, err := job.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Machines == nil {
		o.Machines = machines{f}
	}
	o.Job, o.Cells, o.CacheDir, o.Out = j, j.Cells(), cacheDir, filepath.Join(dir, "out")
	o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func read(xid int, c1, c2 string, mode, dev string) []string {
	l := func(op, crc string, tid, cpu int) string {
		return fmt.Sprintf("userblk0: %-6s %08x 0000000000001000 0000000000001000 00000000%s ffeee000 %d cpu=%d mode=%s dev=%s", op, xid, crc, tid, cpu, mode, dev)
	}
	return []string{l("read0", "aaaaaaaa", 10, 0), l("read1", c1, 20, 3), l("read2", c2, 10, 0), l("readx", c1, 20, 3), l("read3", c2, 10, 0)}
}

func reads(n int, diverge bool, dev string) []string {
	var out []string
	for x := 1; x <= n; x++ {
		c2 := "bbbbbbbb"
		if diverge {
			c2 = "aaaaaaaa"
		}
		out = append(out, read(x, "bbbbbbbb", c2, "atomic", dev)...)
	}
	return out
}

func good(f *fake) {
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		f.printk(0, reads(6, false, "0000000a")...)
		f.report("/root/s.json", stressreport.Report{Tool: "blkstress", Reads: 20, Writes: 20, FirstMS: -1})
		return nil
	}
}

func one(t *testing.T, rep *report.Run) *report.Cell {
	t.Helper()
	if len(rep.Cells) != 1 {
		t.Fatalf("%d cells", len(rep.Cells))
	}
	return rep.Cells[0]
}

func TestCleanWithEvidence(t *testing.T) {
	f := newFake()
	good(f)
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != report.Clean || !c.Met || c.Trace.Reads != 6 || c.Stress.Reads != 20 {
		t.Fatalf("%s met=%v %v", c.Verdict, c.Met, c.Evidence)
	}
	if c.Window == nil || c.Window.Start != 41 || c.Window.Records != 30 || c.Window.Lost != 0 {
		t.Errorf("window %+v", c.Window)
	}
}

// Item 1: a stress step that does nothing is no evidence of anything.
func TestNothingRanIsInconclusive(t *testing.T) {
	f := newFake()
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		f.report("/root/s.json", stressreport.Report{Tool: "blkstress", FirstMS: -1})
		return nil
	}
	rep := runJob(t, f, testJob, Options{})
	c := one(t, rep)
	if c.Verdict != report.Inconclusive || c.Met || rep.Code() != 1 {
		t.Fatalf("%s met=%v code=%d %v", c.Verdict, c.Met, rep.Code(), c.Reasons)
	}
	if !strings.Contains(strings.Join(c.Reasons, "\n"), "only 0 trace transactions checked (the job asks for 4)") {
		t.Errorf("reasons %v", c.Reasons)
	}
}

// Item 1: a failed stress step is never ignored, even when it leaves a report behind.
func TestFailedStepWithReport(t *testing.T) {
	f := newFake()
	good(f)
	inner := f.steps["stress-step"]
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		inner(ctx, f)
		return &runner.ExitError{Cmd: "stress-step", Status: 3}
	}
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != report.Inconclusive || !strings.Contains(strings.Join(c.Reasons, "\n"), `stress step "io" failed`) {
		t.Fatalf("%s %v", c.Verdict, c.Reasons)
	}
	c = one(t, runJob(t, f, strings.Replace(testJob, "report: /root/s.json}", "report: /root/s.json, on_failure: infra}", 1), Options{}))
	if c.Verdict != report.Infra {
		t.Fatalf("on_failure infra: %s %v", c.Verdict, c.Reasons)
	}
}

// Item 2: each cell's window starts at its own sequence number, so a previous cell's
// trace lines (whose xids restart at 1) are never judged again; records lost inside
// the window make clean unprovable; no window start is an infrastructure error.
func TestWindows(t *testing.T) {
	f := newFake()
	f.printk(0, reads(6, true, "")...) // an earlier cell's diverging disk, no dev= ids
	good(f)
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != report.Clean || c.Trace.Transactions != 6 {
		t.Fatalf("earlier records leaked into the window: %s %+v", c.Verdict, c.Trace)
	}

	f = newFake()
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		f.printk(0, reads(3, false, "0b")...)
		f.printk(5, reads(3, false, "0b")[0:0]...)
		f.printk(0, reads(6, false, "0c")...)
		f.report("/root/s.json", stressreport.Report{Reads: 20, Writes: 20, FirstMS: -1})
		return nil
	}
	c = one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != report.Inconclusive || c.Window.Lost != 5 || !strings.Contains(strings.Join(c.Reasons, "\n"), "5 kernel log records were lost") {
		t.Fatalf("gap: %s %+v %v", c.Verdict, c.Window, c.Reasons)
	}

	f = newFake()
	good(f)
	f.lastErr = fmt.Errorf("no /dev/kmsg")
	rep := runJob(t, f, testJob, Options{})
	if c := one(t, rep); c.Verdict != report.Infra || rep.Code() != 2 {
		t.Fatalf("no window start: %s %v", c.Verdict, c.Reasons)
	}
}

// Item 4: a crash meets "reproduces" only when it is the module's; hangs are HUNG.
func TestCrashAttribution(t *testing.T) {
	oops := func(frame string) []string {
		return []string{"BUG: unable to handle page fault for address: deadbeef", "#PF: supervisor read access in kernel mode",
			"EIP: " + frame, "Call Trace:", " " + frame, "---[ end trace 0000000000000000 ]---"}
	}
	repro := strings.Replace(testJob, "default: clean", "default: reproduces", 1)
	for _, tc := range []struct {
		lines   []string
		verdict string
		met     bool
	}{
		{oops("ext4_foo+0x10/0x20"), report.Crashed, false},
		{oops("userblk_ioctl+0x10/0x20 [userblk]"), report.Crashed, true},
		{[]string{"watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [migration/0:15]", "PC is at rcu_momentary_dyntick_idle+0x40/0xbc", ""}, report.Hung, false},
	} {
		f := newFake()
		f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
			f.printk(0, tc.lines...)
			<-ctx.Done() // the step never finishes on its own: the crash watcher stops it
			return ctx.Err()
		}
		if tc.verdict == report.Hung {
			f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
				f.printk(0, tc.lines...)
				f.report("/root/s.json", stressreport.Report{Reads: 20, Writes: 20, FirstMS: -1})
				return nil
			}
		}
		c := one(t, runJob(t, f, repro, Options{}))
		if c.Verdict != tc.verdict || c.Met != tc.met {
			t.Errorf("%s: %s met=%v, want %s %v (%v)", tc.lines[0], c.Verdict, c.Met, tc.verdict, tc.met, c.Reasons)
		}
		if tc.verdict == report.Crashed && f.closed == 0 {
			t.Errorf("a crashed machine must not be reused")
		}
	}
}

// Item 5: on a HIGHMEM machine, clean needs a positive canary.
func TestCanary(t *testing.T) {
	for _, tc := range []struct {
		line, verdict, why string
	}{
		{"kmodlab-canary: local=1875 kmap=0 of 2000 highmem=16 cpus=0,1 user_local=1870 user_kmap=0 ttbr0_pan=0", report.Clean, ""},
		{"kmodlab-canary: local=1866 kmap=0 of 2000 highmem=16 cpus=0,1 user_local=0 user_kmap=0 ttbr0_pan=1", report.CannotDetect, "kernel threads only"},
		{"kmodlab-canary: local=0 kmap=0 of 2000 highmem=16 cpus=0,1 user_local=0 user_kmap=0 ttbr0_pan=0", report.CannotDetect, "canary negative"},
		{"", report.CannotDetect, "canary failed"},
	} {
		f := newFake()
		good(f)
		f.highmem, f.canary = true, tc.line
		c := one(t, runJob(t, f, testJob, Options{Canary: true}))
		if c.Verdict != tc.verdict || !strings.Contains(strings.Join(c.Reasons, "\n"), tc.why) {
			t.Errorf("%q: %s %v", tc.line, c.Verdict, c.Reasons)
		}
	}
	f := newFake()
	good(f)
	f.highmem = true
	c := one(t, runJob(t, f, testJob, Options{Canary: false}))
	if c.Verdict != report.CannotDetect || !strings.Contains(strings.Join(c.Reasons, "\n"), "--no-canary") {
		t.Errorf("--no-canary: %s %v", c.Verdict, c.Reasons)
	}
}

// Item 6: I/O errors are not the bug.
func TestIOErrorsAreNotMismatches(t *testing.T) {
	f := newFake()
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		f.printk(0, reads(6, false, "0d")...)
		f.report("/root/s.json", stressreport.Report{Reads: 20, Writes: 20, IOErrors: 4, FirstMS: -1})
		return nil
	}
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != report.Inconclusive || c.Stress.IOErrors != 4 {
		t.Fatalf("%s %v", c.Verdict, c.Reasons)
	}
}

// A confirmed divergence stops stress at once (unless --full).
func TestStopAtSureVerdict(t *testing.T) {
	for _, full := range []bool{false, true} {
		f := newFake()
		f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
			f.printk(0, reads(2, true, "0e")...)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(3 * time.Second):
			}
			f.report("/root/s.json", stressreport.Report{Reads: 20, Writes: 20, FirstMS: -1})
			return nil
		}
		c := one(t, runJob(t, f, strings.Replace(testJob, "default: clean", "default: reproduces", 1), Options{Full: full}))
		if c.Verdict != report.Reproduced || !c.Met {
			t.Fatalf("full=%v: %s %v", full, c.Verdict, c.Reasons)
		}
		stopped := strings.HasPrefix(c.StopReason, "sure verdict")
		if stopped == full || (!full && c.StopMS > 2500) {
			t.Errorf("full=%v: stopped %q after %d ms", full, c.StopReason, c.StopMS)
		}
	}
}

// --repeat runs a cell N times with a fresh module load each time and gives rates.
func TestRepeat(t *testing.T) {
	f := newFake()
	n := 0
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		n++
		f.printk(0, reads(6, n == 2, fmt.Sprintf("%08x", n))...)
		f.report("/root/s.json", stressreport.Report{Reads: 20, Writes: 20, FirstMS: -1})
		return nil
	}
	loads := 0
	f.steps["insmod-step"] = func(ctx context.Context, f *fake) error { loads++; return nil }
	c := one(t, runJob(t, f, testJob, Options{Repeat: 3}))
	if loads != 3 || len(c.Runs) != 3 || c.Verdict != report.Clean || c.Met || c.Rate != "clean 2/3, REPRODUCED 1/3" {
		t.Fatalf("loads=%d runs=%d %s met=%v rate=%q", loads, len(c.Runs), c.Verdict, c.Met, c.Rate)
	}
	if !strings.HasSuffix(c.Runs[1].LogDir, "run02") || !strings.Contains(c.Replay, "--repeat 3") {
		t.Errorf("log dir %s replay %s", c.Runs[1].LogDir, c.Replay)
	}
	c = one(t, runJob(t, f, strings.Replace(testJob, "default: clean", "default: clean\n  min_rate: 0.6", 1), Options{Repeat: 3}))
	if !c.Met {
		t.Errorf("min_rate 0.6: %s", c.Rate)
	}
}

// Ctrl-C during stress: the lab could not judge (INFRA, exit 2), never INCONCLUSIVE.
func TestInterruptedIsInfra(t *testing.T) {
	f := newFake()
	started := make(chan struct{})
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yaml")
	os.WriteFile(file, []byte(testJob), 0o644)
	j, err := job.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	rep, err := Run(ctx, Options{Job: j, Cells: j.Cells(), Machines: machines{f}, CacheDir: cacheDir, Out: filepath.Join(dir, "out"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if c := one(t, rep); c.Verdict != report.Infra || rep.Code() != 2 {
		t.Errorf("%s code=%d %v", c.Verdict, rep.Code(), c.Reasons)
	}
}

// Stress sized by evidence: each of two steps stops once it has its share of
// min_evidence × evidence_factor (its tool, which prints progress lines, is sent
// SIGTERM and writes its report), unless --full runs them to their cap.
func TestStressSizedByEvidence(t *testing.T) {
	const sized = `name: t
targets: [fake]
matrix: {mode: [a]}
build: {modules: [{name: userblk, dir: .}]}
setup: [{name: insmod, run: insmod-step}]
stress:
  - {name: one, run: stress-step one, report: /root/one.json}
  - {name: two, run: stress-step two, report: /root/two.json}
expect:
  default: clean
  min_evidence: {transactions: 4, io: 10}
  evidence_factor: 2
`
	for _, full := range []bool{false, true} {
		f := newFake()
		term := make(chan struct{}, 1)
		f.steps["pkill -TERM"] = func(ctx context.Context, f *fake) error { term <- struct{}{}; return nil }
		xid := 0
		var ran []float64
		tool := func(report string) func(ctx context.Context, f *fake, stdout io.Writer) error {
			return func(ctx context.Context, f *fake, stdout io.Writer) error {
				start := time.Now()
				var p stressreport.Progress
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for cap := time.After(1500 * time.Millisecond); ; {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-term:
					case <-cap:
					case <-tick.C:
						xid++
						f.printk(0, read(xid, "bbbbbbbb", "bbbbbbbb", "atomic", "0f")...)
						p.Reads, p.Writes = p.Reads+1, p.Writes+1
						fmt.Fprintln(stdout, p.Line())
						continue
					}
					break
				}
				ran = append(ran, time.Since(start).Seconds())
				f.report(report, stressreport.Report{Tool: "blkstress", Reads: p.Reads, Writes: p.Writes, FirstMS: -1})
				return nil
			}
		}
		f.stepsOut = map[string]func(context.Context, *fake, io.Writer) error{
			"stress-step one": tool("/root/one.json"), "stress-step two": tool("/root/two.json")}
		c := one(t, runJob(t, f, sized, Options{Full: full}))
		if c.Verdict != report.Clean || !c.Met || len(ran) != 2 {
			t.Fatalf("full=%v: %s, %d steps ran: %v", full, c.Verdict, len(ran), c.Reasons)
		}
		if full {
			if c.StopReason != "stress finished" || ran[0] < 1.4 || ran[1] < 1.4 {
				t.Errorf("--full: %q, steps ran %v s", c.StopReason, ran)
			}
			continue
		}
		// Each step's share: 4 transactions and 10 verified I/O; the cell's: 8 and 20.
		if !strings.HasPrefix(c.StopReason, "enough evidence") || !strings.Contains(c.StopReason, "one after") ||
			!strings.Contains(c.StopReason, "two after") || ran[0] > 1.2 || ran[1] > 1.2 {
			t.Errorf("%q, steps ran %v s", c.StopReason, ran)
		}
		if io := c.Stress.Reads + c.Stress.Writes; io < 20 || c.Trace.Reads < 8 {
			t.Errorf("stopped short of the target: %d I/O, %d transactions", io, c.Trace.Reads)
		}
	}
}
