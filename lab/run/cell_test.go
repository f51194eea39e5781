package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/stressreport"
)

func TestCleanWithEvidence(t *testing.T) {
	f := newFake()
	good(f)
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != verdict.Clean || !c.Met || c.Trace.Reads != 6 || c.Stress.Reads != 20 {
		t.Fatalf("%s met=%v %v", c.Verdict, c.Met, c.Evidence)
	}
	if c.Window == nil || c.Window.Start != 41 || c.Window.Records != 30 || c.Window.Lost != 0 {
		t.Errorf("window %+v", c.Window)
	}
}

// A stress report whose copy ends early is fetched again: two failed copies still give
// a clean cell from the third; three make the step INFRA, saying how often it tried.
func TestStressReportFetchRetried(t *testing.T) {
	for _, tc := range []struct {
		fails int
		want  verdict.Verdict
	}{{2, verdict.Clean}, {3, verdict.Infra}} {
		f := newFake()
		good(f)
		f.fetchFails = map[string]int{"/root/s.json": tc.fails}
		c := one(t, runJob(t, f, testJob, Options{}))
		if c.Verdict != tc.want {
			t.Errorf("%d failed copies: %s, want %s: %v", tc.fails, c.Verdict, tc.want, c.Evidence)
		}
		if tc.want == verdict.Clean && (c.Stress == nil || c.Stress.Reads != 20) {
			t.Errorf("%d failed copies: stress %+v, want the report's 20 reads", tc.fails, c.Stress)
		}
		if tc.want == verdict.Infra && !strings.Contains(strings.Join(c.Evidence, "\n"), "(3 tries)") {
			t.Errorf("INFRA evidence does not say how often it tried: %v", c.Evidence)
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
	if loads != 3 || len(c.Runs) != 3 || c.Verdict != verdict.Clean || c.Met || c.Rate != "clean 2/3, REPRODUCED 1/3" {
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
	j := loadJob(t, testJob)
	dir := filepath.Dir(j.File)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	rep, err := Run(ctx, Options{Job: j, Cells: j.Cells(), Machines: machines{f}, CacheDir: cacheDir, Out: filepath.Join(dir, "out"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if c := one(t, rep); c.Verdict != verdict.Infra || rep.Code() != 2 {
		t.Errorf("%s code=%d %v", c.Verdict, rep.Code(), c.Reasons)
	}
}

// A step's end is the worst of its steps'; only a finished one leaves the machine to
// the next step, and a failed setup leaves nothing to stress.
func TestStepsAdd(t *testing.T) {
	var s Steps
	s.add(Steps{End: Crashed, Failed: []verdict.Step{{Phase: "stress", Name: "a"}}})
	s.add(Steps{End: TimedOut, Stress: []verdict.Stress{{Step: "b"}}})
	if s.End != Crashed || len(s.Failed) != 1 || len(s.Stress) != 1 || s.End.Usable() {
		t.Errorf("%+v", s)
	}
	if (Steps{}).setupOK() != true || (Steps{Failed: []verdict.Step{{Phase: "setup"}}}).setupOK() || (Steps{End: Lost}).setupOK() {
		t.Error("setupOK")
	}
	if !(Steps{Failed: []verdict.Step{{Phase: "stress"}}}).setupOK() {
		t.Error("a failed stress step is no failed setup")
	}
}

// What a cell brought back says whether its machine may serve the next cell.
func TestBroken(t *testing.T) {
	c := job.Cell{ID: "fake/a"}
	win := &kmsg.Window{}
	for _, tc := range []struct {
		col  Collected
		v    verdict.Verdict
		want string
	}{
		{Collected{Kernel: KernelLog{Window: win}}, verdict.Clean, ""},
		{Collected{Lost: true, Kernel: KernelLog{Window: win}}, verdict.Infra, "connection lost"},
		{Collected{Kernel: KernelLog{Window: win}}, verdict.Hung, "fake/a: HUNG"},
		{Collected{Steps: Steps{End: TimedOut}, Kernel: KernelLog{Window: win}}, verdict.Inconclusive, "fake/a: a step was stopped"},
		{Collected{Steps: Steps{End: Crashed}, Kernel: KernelLog{Window: win}}, verdict.Infra, "fake/a: a step was stopped"},
		{Collected{}, verdict.Infra, "kernel log unreadable"},
		{Collected{Steps: Steps{Failed: []verdict.Step{{Phase: "teardown", Name: "rmmod"}}}, Kernel: KernelLog{Window: win}}, verdict.Clean, `teardown step "rmmod" failed`},
		{Collected{Steps: Steps{Failed: []verdict.Step{{Phase: "stress", Name: "io"}}}, Kernel: KernelLog{Window: win}}, verdict.Inconclusive, ""},
	} {
		if got := broken(c, tc.col, verdict.Decision{Verdict: tc.v}); got != tc.want {
			t.Errorf("%+v %s: %q, want %q", tc.col, tc.v, got, tc.want)
		}
	}
}
