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
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
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
	// fetchFails is how many fetches of a path fail (an scp ended early) before one works.
	fetchFails map[string]int
	closed     int
	ts         int64
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
	if f.fetchFails[remote] > 0 {
		f.fetchFails[remote]--
		w.Write([]byte("{\"reads\": 1")) // a partial copy, which the retry must not keep
		return fmt.Errorf("scp %s: %w", remote, io.EOF)
	}
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

// loadJob loads a job from its text, in a directory of the test's own.
func loadJob(t *testing.T, jobText string) *job.Job {
	t.Helper()
	file := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(file, []byte(jobText), 0o644)
	j, err := job.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func runJob(t *testing.T, f *fake, jobText string, o Options) *report.Run {
	t.Helper()
	j := loadJob(t, jobText)
	dir := filepath.Dir(j.File)
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
