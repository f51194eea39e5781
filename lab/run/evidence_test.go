package run

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Item 1: a stress step that does nothing is no evidence of anything.
func TestNothingRanIsInconclusive(t *testing.T) {
	f := newFake()
	f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
		f.report("/root/s.json", stressreport.Report{Tool: "blkstress", FirstMS: -1})
		return nil
	}
	rep := runJob(t, f, testJob, Options{})
	c := one(t, rep)
	if c.Verdict != verdict.Inconclusive || c.Met || rep.Code() != 1 {
		t.Fatalf("%s met=%v code=%d %v", c.Verdict, c.Met, rep.Code(), c.Reasons)
	}
	if !strings.Contains(strings.Join(c.Reasons, "\n"), "only 0 trace transactions checked (the job asks for 4)") {
		t.Errorf("reasons %v", c.Reasons)
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
		verdict verdict.Verdict
		met     bool
	}{
		{oops("ext4_foo+0x10/0x20"), verdict.Crashed, false},
		{oops("userblk_ioctl+0x10/0x20 [userblk]"), verdict.Crashed, true},
		{[]string{"watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [migration/0:15]", "PC is at rcu_momentary_dyntick_idle+0x40/0xbc", ""}, verdict.Hung, false},
	} {
		f := newFake()
		f.steps["stress-step"] = func(ctx context.Context, f *fake) error {
			f.printk(0, tc.lines...)
			<-ctx.Done() // the step never finishes on its own: the crash watcher stops it
			return ctx.Err()
		}
		if tc.verdict == verdict.Hung {
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
		if tc.verdict == verdict.Crashed && f.closed == 0 {
			t.Errorf("a crashed machine must not be reused")
		}
	}
}

// Item 5: on a HIGHMEM machine, clean needs a positive canary.
func TestCanary(t *testing.T) {
	for _, tc := range []struct {
		line    string
		verdict verdict.Verdict
		why     string
	}{
		{"kmodlab-canary: local=1875 kmap=0 of 2000 highmem=16 cpus=0,1 user_local=1870 user_kmap=0 ttbr0_pan=0", verdict.Clean, ""},
		{"kmodlab-canary: local=1866 kmap=0 of 2000 highmem=16 cpus=0,1 user_local=0 user_kmap=0 ttbr0_pan=1", verdict.CannotDetect, "kernel threads only"},
		{"kmodlab-canary: local=0 kmap=0 of 2000 highmem=16 cpus=0,1 user_local=0 user_kmap=0 ttbr0_pan=0", verdict.CannotDetect, "canary negative"},
		{"", verdict.CannotDetect, "canary failed"},
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
	if c.Verdict != verdict.CannotDetect || !strings.Contains(strings.Join(c.Reasons, "\n"), "--no-canary") {
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
	if c.Verdict != verdict.Inconclusive || c.Stress.IOErrors != 4 {
		t.Fatalf("%s %v", c.Verdict, c.Reasons)
	}
}

// judge takes values, no machine: a batch cell's log (kernel-log lines, console text,
// stress reports) is judged as an interactive cell's.
func TestJudgeFromValues(t *testing.T) {
	j := loadJob(t, strings.Replace(testJob, "default: clean", "default: reproduces", 1))
	p := &targetRun{o: Options{Job: j}, target: "fake", canary: verdict.Canary{State: verdict.CanaryDisabled}}
	c := j.Cells()[0]
	kernel := func(diverge bool) KernelLog {
		k := newKernelLog(10)
		for i, l := range reads(6, diverge, "0a") {
			k.record(fmt.Sprintf("6,%d,%d,-;%s", 11+i, 1000+i, l))
		}
		return k.result(0)
	}
	st, _ := parseStress("io", "/root/s.json", []byte(`{"tool":"blkstress","reads":20,"writes":20,"first_mismatch_ms":-1}`))
	col := Collected{Kernel: kernel(true), Steps: Steps{Stress: []verdict.Stress{st}}, Stop: notRun}
	got := p.judge(c, col)
	if got.Decision.Verdict != verdict.Reproduced || !got.Decision.Met || got.Evidence.Trace.Diverged() != 6 {
		t.Fatalf("%s met=%v %v", got.Decision.Verdict, got.Decision.Met, got.Decision.Reasons)
	}
	rc := &report.Cell{Outcome: report.Outcome{FirstDivergenceMS: -1, StopMS: -1}}
	record(rc, got)
	if rc.Verdict != verdict.Reproduced || rc.Trace.Diverged != 6 || rc.Stress.Reads != 20 || rc.StopMS != -1 ||
		rc.Evidence[len(rc.Evidence)-1] != "verdict: "+strings.Join(got.Decision.Reasons, "; ") {
		t.Errorf("%+v", rc)
	}

	// A crash the console saw, or only the machine's panic signal, is judged from the
	// console text and the flag.
	col = Collected{Kernel: kernel(false), Console: "BUG: unable to handle page fault for address: deadbeef\nCall Trace:\n userblk_ioctl+0x10/0x20 [userblk]\n---[ end trace 0000000000000000 ]---\n", Stop: notRun}
	if got := p.judge(c, col); got.Decision.Verdict != verdict.Crashed || !got.Decision.Met {
		t.Errorf("console crash: %s met=%v %v", got.Decision.Verdict, got.Decision.Met, got.Decision.Reasons)
	}
	col = Collected{Kernel: kernel(false), Panicked: true, Stop: notRun}
	if got := p.judge(c, col); got.Decision.Verdict != verdict.Crashed || !strings.Contains(got.Decision.Crash.Title, "pvpanic") {
		t.Errorf("pvpanic: %s %+v", got.Decision.Verdict, got.Decision.Crash)
	}
	// No window: the lab could not judge.
	if got := p.judge(c, Collected{Stop: notRun}); got.Decision.Verdict != verdict.Infra {
		t.Errorf("no window: %s %v", got.Decision.Verdict, got.Decision.Reasons)
	}
}

// KUnit names the file as the build's temporary copy had it; the evidence names the
// job's own module source.
func TestSourcePaths(t *testing.T) {
	root, _ := filepath.Abs("../..")
	j := &job.Job{File: filepath.Join(root, "examples/kunit/job.yaml"),
		Build: job.Build{Modules: []job.Module{{Name: "kunit_example", Dir: "examples/kunit/kunit_example"}}}}
	p := &targetRun{o: Options{Job: j}}
	got := p.sourcePaths("fold_carry: EXPECTATION FAILED at /tmp/kmodlab-kbuild-1995613413/kunit_example.c:65")
	if want := "fold_carry: EXPECTATION FAILED at examples/kunit/kunit_example/kunit_example.c:65"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := p.sourcePaths("at /tmp/kmodlab-kbuild-7/other.c:3"); got != "at /tmp/kmodlab-kbuild-7/other.c:3" {
		t.Errorf("a file no module holds is left as it is: %q", got)
	}
}
