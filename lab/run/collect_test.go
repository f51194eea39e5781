package run

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/stressreport"
)

// Item 2: each cell's window starts at its own sequence number, so a previous cell's
// trace lines (whose xids restart at 1) are never judged again; records lost inside
// the window make clean unprovable; no window start is an infrastructure error.
func TestWindows(t *testing.T) {
	f := newFake()
	f.printk(0, reads(6, true, "")...) // an earlier cell's diverging disk, no dev= ids
	good(f)
	c := one(t, runJob(t, f, testJob, Options{}))
	if c.Verdict != verdict.Clean || c.Trace.Transactions != 6 {
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
	if c.Verdict != verdict.Inconclusive || c.Window.Lost != 5 || !strings.Contains(strings.Join(c.Reasons, "\n"), "5 kernel log records were lost") {
		t.Fatalf("gap: %s %+v %v", c.Verdict, c.Window, c.Reasons)
	}

	f = newFake()
	good(f)
	f.lastErr = fmt.Errorf("no /dev/kmsg")
	rep := runJob(t, f, testJob, Options{})
	if c := one(t, rep); c.Verdict != verdict.Infra || rep.Code() != 2 {
		t.Fatalf("no window start: %s %v", c.Verdict, c.Reasons)
	}
}

// The kernel log's lines go into the window's counts, the trace and the crash scanner;
// a line that is no record is counted, a record before the window is not read.
func TestKernelLog(t *testing.T) {
	k := newKernelLog(41)
	lines := []string{"6,41,100,-;before the window", "not a record"}
	for i, l := range reads(2, true, "0a") {
		lines = append(lines, fmt.Sprintf("6,%d,%d,-;%s", 42+i, 1000+i, l))
	}
	lines = append(lines, "0,60,2000,-;BUG: unable to handle page fault for address: deadbeef", "4,61,2001,-;Call Trace:")
	shown := 0
	for _, l := range lines {
		if _, ok := k.record(l); ok {
			shown++
		}
	}
	got := k.result(0)
	w := got.Window
	if shown != 12 || w.Start != 41 || w.End != 61 || w.Bad != 1 || w.Lost != 8 || w.Records != 12 {
		t.Errorf("shown %d, window %+v", shown, w)
	}
	if got.Trace == nil || got.Trace.Transactions != 2 || got.Trace.Diverged() != 2 {
		t.Errorf("trace %+v", got.Trace)
	}
	if len(got.Reports) != 1 || !strings.Contains(got.Reports[0].Title, "page fault") {
		t.Errorf("reports %+v", got.Reports)
	}
	if e := k.result(70).Window.End; e != 70 {
		t.Errorf("an end given: %d", e)
	}
}

// A stress report is read from its bytes; one that cannot be read is the lab's failure.
func TestParseStress(t *testing.T) {
	data, _ := json.Marshal(stressreport.Report{Tool: "blkstress", Reads: 3, FirstMS: -1})
	st, bad := parseStress("io", "/root/s.json", data)
	if bad != nil || st.Step != "io" || st.Report.Reads != 3 {
		t.Errorf("%+v %+v", st, bad)
	}
	_, bad = parseStress("io", "/root/s.json", []byte("{"))
	if bad == nil || bad.Policy != verdict.PolicyInfra || bad.Phase != "stress" || !strings.HasPrefix(bad.Detail, "stress report /root/s.json: ") {
		t.Errorf("a broken report: %+v", bad)
	}
}
