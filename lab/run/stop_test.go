package run

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/stop"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/stressreport"
)

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
		if c.Verdict != verdict.Reproduced || !c.Met {
			t.Fatalf("full=%v: %s %v", full, c.Verdict, c.Reasons)
		}
		stopped := strings.HasPrefix(c.StopReason, "sure verdict")
		if stopped == full || (!full && c.StopMS > 2500) {
			t.Errorf("full=%v: stopped %q after %d ms", full, c.StopReason, c.StopMS)
		}
	}
}

// Stress sized by evidence: each of two steps stops once it has its share of
// min_evidence × evidence_factor (its tool, which prints progress lines, is sent
// SIGTERM and writes its report), unless --full runs them to their cap, or the job
// expects the cell to reproduce (then only a sure verdict ends a step early).
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
	for _, tc := range []struct {
		full   bool
		expect string
	}{{false, "clean"}, {true, "clean"}, {false, "reproduces"}} {
		full, capped := tc.full, tc.full || tc.expect == "reproduces"
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
		c := one(t, runJob(t, f, strings.Replace(sized, "default: clean", "default: "+tc.expect, 1), Options{Full: full}))
		if c.Verdict != verdict.Clean || c.Met != (tc.expect == "clean") || len(ran) != 2 {
			t.Fatalf("%+v: %s (met %v), %d steps ran: %v", tc, c.Verdict, c.Met, len(ran), c.Reasons)
		}
		if capped {
			if c.StopReason != "stress finished" || ran[0] < 1.4 || ran[1] < 1.4 {
				t.Errorf("%+v: %q, steps ran %v s", tc, c.StopReason, ran)
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

// The stopper's finish is the stress phase's end as a value: none when stress never
// started, "stress finished" by default, and the first reason given otherwise.
func TestStopperFinish(t *testing.T) {
	st := newStopper(newFake(), stop.Rule{})
	if got := st.finish(); got != notRun {
		t.Errorf("never started: %+v", got)
	}
	st.start(func() {})
	st.kernelClock(5_000_000)
	time.Sleep(20 * time.Millisecond)
	got := st.finish()
	if got.Reason != "stress finished" || got.MS < 20 || got.KernelUS != 5_000_000 {
		t.Errorf("finished: %+v", got)
	}
	st = newStopper(newFake(), stop.Rule{})
	st.start(func() {})
	st.crashed()
	st.crashed()
	if got := st.finish(); got.Reason != "the kernel crashed" || got.KernelUS != -1 {
		t.Errorf("crashed: %+v", got)
	}
	if st.stoppedOnPurpose() {
		t.Error("a crash is no sure verdict")
	}
}
