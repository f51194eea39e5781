package verdict

import (
	"os"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/kmodlab/kmodlab/stressreport"
)

// good is the evidence of a healthy clean cell on a HIGHMEM machine.
func good() Evidence {
	return Evidence{
		Trace:   &trace.Result{Transactions: 3000, Reads: 1500, Writes: 1500},
		Stress:  []Stress{{Step: "odirect", Report: &stressreport.Report{Reads: 400, Writes: 400, FirstMS: -1}}},
		Window:  &kmsg.Window{Records: 20000},
		Highmem: true,
		Canary:  Canary{State: CanaryPositive},
		Modules: []string{"userblk"},
	}
}

var min = Expect{Want: ExpectClean, Min: MinEvidence{Transactions: 2000, IO: 200}}

func crashFile(t *testing.T, file string) console.Report {
	data, err := os.ReadFile("../../observe/console/testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return *console.First(console.Find(string(data)))
}

func TestDecide(t *testing.T) {
	armOops := crashFile(t, "arm-oops.log")
	softLockup := crashFile(t, "arm-softlockup.log")
	foreign := console.Report{Title: "BUG: unable to handle page fault in ext4_foo", Kind: console.KindOops,
		Frames: []console.Frame{{Func: "ext4_foo", Offset: 1, Size: 2}}, FaultAddr: 0xdead0000}
	handed := foreign
	handed.FaultAddr = 0xffeee010
	hungTask := console.Report{Title: "INFO: task hung in io_schedule", Kind: console.KindHung, Blocked: "blkstress:160"}
	warning := console.Report{Title: "WARNING in block/genhd.c:1", Kind: console.KindWarning}

	for _, tc := range []struct {
		name    string
		mod     func(*Evidence)
		ex      Expect
		verdict Verdict
		met     bool
		reason  string
	}{
		{"clean with evidence", nil, min, Clean, true, "nothing diverged"},
		// Item 1: clean needs evidence.
		{"nothing ran", func(e *Evidence) { e.Trace = &trace.Result{}; e.Stress = nil }, min, Inconclusive, false, "only 0 trace transactions"},
		{"too little io", func(e *Evidence) { e.Stress[0].Report.Reads, e.Stress[0].Report.Writes = 10, 10 }, min, Inconclusive, false, "only 20 verified"},
		{"too few ops", nil, Expect{Want: ExpectClean, Min: MinEvidence{Ops: 5}}, Inconclusive, false, "only 0 checked operations"},
		{"failed step with report, evidence policy", func(e *Evidence) {
			e.Failed = []Step{{Phase: "stress", Name: "odirect", Kind: FailExit, Detail: "exit status 1", Policy: PolicyEvidence}}
		}, min, Inconclusive, false, "shows no mismatch"},
		{"failed step, infra policy", func(e *Evidence) {
			e.Failed = []Step{{Phase: "stress", Name: "odirect", Kind: FailExit, Detail: "exit status 1", Policy: PolicyInfra}}
		}, min, Infra, false, "failed"},
		{"failed step explained by mismatches", func(e *Evidence) {
			e.Failed = []Step{{Phase: "stress", Name: "odirect", Kind: FailExit, Detail: "exit status 1", Policy: PolicyEvidence}}
			e.Stress[0].Report.Mismatches = 3
		}, Expect{Want: ExpectReproduces}, Reproduced, true, "data: 3 mismatches"},
		// Item 2: windows.
		{"no window start", func(e *Evidence) { e.Window = nil }, min, Infra, false, "window's start"},
		{"records lost", func(e *Evidence) { e.Window.Lost = 12 }, min, Inconclusive, false, "12 kernel log records were lost"},
		{"records lost but diverged", func(e *Evidence) { e.Window.Lost = 12; e.Trace.DivergedTotal = 4 }, Expect{Want: ExpectReproduces}, Reproduced, true, "4 of 3000"},
		// Item 3: the oracle's doubts.
		{"integrity errors", func(e *Evidence) { e.Trace.IntegrityTotal = 1 }, min, Inconclusive, false, "integrity"},
		{"unreadable lines", func(e *Evidence) { e.Trace.Merged = 2; e.Trace.Long = 1 }, min, Inconclusive, false, "3 trace lines could not be read"},
		// Item 4: crashes attributed, hangs are hangs.
		{"attributed oops", func(e *Evidence) { e.Crashes = []console.Report{armOops} }, Expect{Want: ExpectReproduces}, Crashed, true, "frame userblk_trace"},
		{"attributed oops, expect crashes", func(e *Evidence) { e.Crashes = []console.Report{warning, armOops} }, Expect{Want: ExpectCrashes}, Crashed, true, "crash:"},
		{"attributed by handed-over page", func(e *Evidence) {
			e.Crashes = []console.Report{handed}
			e.Trace.HandedPages = []uint64{0xffeee000}
		}, Expect{Want: ExpectReproduces}, Crashed, true, "handed across threads"},
		{"foreign oops", func(e *Evidence) { e.Crashes = []console.Report{foreign} }, Expect{Want: ExpectReproduces}, Crashed, false, "not attributed"},
		{"foreign oops, expect crashes", func(e *Evidence) { e.Crashes = []console.Report{foreign} }, Expect{Want: ExpectCrashes}, Crashed, false, "not attributed"},
		{"foreign oops with divergence", func(e *Evidence) { e.Crashes = []console.Report{foreign}; e.Trace.DivergedTotal = 1 }, Expect{Want: ExpectReproduces}, Reproduced, true, "also: crash"},
		{"soft lockup is a hang", func(e *Evidence) { e.Crashes = []console.Report{softLockup} }, Expect{Want: ExpectReproduces}, Hung, false, "soft lockup"},
		{"hung task + warning", func(e *Evidence) { e.Crashes = []console.Report{warning, hungTask} }, Expect{Want: ExpectReproduces}, Hung, false, "blkstress:160"},
		{"step timeout", func(e *Evidence) {
			e.Failed = []Step{{Phase: "stress", Name: "fs", Kind: FailTimeout, Detail: "did not finish within 4m0s"}}
		}, min, Hung, false, "did not finish"},
		{"warning alone is no crash", func(e *Evidence) { e.Crashes = []console.Report{warning} }, min, Clean, true, ""},
		{"crash explains a lost connection", func(e *Evidence) { e.Lost = true; e.Crashes = []console.Report{armOops} }, Expect{Want: ExpectReproduces}, Crashed, true, ""},
		{"lost connection", func(e *Evidence) { e.Lost = true }, min, Infra, false, "connection"},
		{"lost connection after divergences", func(e *Evidence) { e.Lost = true; e.Trace.DivergedTotal = 21 },
			Expect{Want: ExpectReproduces}, Reproduced, true, "also: the connection to the machine was lost"},
		{"lost connection after a data mismatch", func(e *Evidence) { e.Lost = true; e.Stress[0].Report.Mismatches = 1 },
			Expect{Want: ExpectReproduces}, Reproduced, true, "data: 1 mismatches"},
		{"divergences without a window start", func(e *Evidence) { e.Window = nil; e.Trace.DivergedTotal = 21 },
			Expect{Want: ExpectReproduces}, Infra, false, "window's start"},
		{"setup failure", func(e *Evidence) {
			e.Failed = []Step{{Phase: "setup", Name: "insmod", Kind: FailExit, Detail: "exit status 1"}}
		}, min, Infra, false, "insmod"},
		{"teardown failure", func(e *Evidence) {
			e.Failed = []Step{{Phase: "teardown", Name: "rmmod", Kind: FailExit, Detail: "exit status 1"}}
		}, min, Inconclusive, false, "rmmod"},
		// Item 5: the canary.
		{"negative canary", func(e *Evidence) { e.Canary = Canary{State: CanaryNegative, Detail: "stale 0/2000"} }, min, CannotDetect, false, "stale 0/2000"},
		{"failed canary", func(e *Evidence) { e.Canary = Canary{State: CanaryFailed, Detail: "insmod"} }, min, CannotDetect, false, "failed"},
		{"skipped canary", func(e *Evidence) { e.Canary = Canary{State: CanarySkipped} }, min, CannotDetect, false, "skipped"},
		{"no canary", func(e *Evidence) { e.Canary = Canary{State: CanaryDisabled} }, min, CannotDetect, false, "--no-canary"},
		{"no canary, no HIGHMEM", func(e *Evidence) { e.Canary = Canary{State: CanaryDisabled}; e.Highmem = false }, min, Clean, true, ""},
		// Item 6: lost writes are not the bug.
		{"io errors", func(e *Evidence) { e.Stress[0].Report.IOErrors = 5 }, min, Inconclusive, false, "5 I/O errors"},
		{"evidence exactly at the minimum", func(e *Evidence) {
			e.Trace.Reads, e.Trace.Writes = 1000, 1000
			e.Stress[0].Report.Reads, e.Stress[0].Report.Writes = 100, 100
		}, min, Clean, true, "2000 trace transactions, 200 verified"},
		// Expectations.
		{"clean but expected to reproduce", nil, Expect{Want: ExpectReproduces}, Clean, false, ""},
		{"diverged but expected clean", func(e *Evidence) { e.Trace.DivergedTotal = 2 }, min, Reproduced, false, "2 of 3000"},
		{"pin mismatch", func(e *Evidence) { e.Pins = []string{"image was a, is b"} }, min, Clean, false, "pin mismatch"},
		{"unknown expectation", nil, Expect{Want: "maybe"}, Clean, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := good()
			if tc.mod != nil {
				tc.mod(&ev)
			}
			d := Decide(ev, tc.ex)
			if d.Verdict != tc.verdict || d.Met != tc.met {
				t.Errorf("verdict %s met %v, want %s %v (reasons %q)", d.Verdict, d.Met, tc.verdict, tc.met, d.Reasons)
			}
			if !strings.Contains(strings.Join(d.Reasons, "\n"), tc.reason) {
				t.Errorf("reasons %q lack %q", d.Reasons, tc.reason)
			}
		})
	}
}

// A verdict's reasons name the evidence it had and nothing else, and a crash travels
// with the decision.
func TestDecideReasonsAreItsEvidence(t *testing.T) {
	ev := good()
	ev.Stress[0].Report.Mismatches = 2
	d := Decide(ev, Expect{Want: ExpectReproduces})
	if d.Verdict != Reproduced || len(d.Reasons) != 1 || d.Reasons[0] != "data: 2 mismatches" {
		t.Errorf("mismatches only: %s %q", d.Verdict, d.Reasons)
	}
	ev = good()
	ev.Trace.DivergedTotal = 3
	d = Decide(ev, Expect{Want: ExpectReproduces})
	if d.Verdict != Reproduced || len(d.Reasons) != 1 || d.Reasons[0] != "trace: 3 of 3000 transactions diverged" {
		t.Errorf("divergences only: %s %q", d.Verdict, d.Reasons)
	}
	ev = good()
	ev.Crashes = []console.Report{crashFile(t, "arm-oops.log")}
	if d = Decide(ev, Expect{Want: ExpectReproduces}); d.Crash == nil || d.Crash.Title != ev.Crashes[0].Title {
		t.Errorf("the decision lost its crash: %+v", d.Crash)
	}
}

// The verdict must follow its evidence, not the expectation: the same evidence gives
// the same verdict whatever the job expects.
func TestVerdictIgnoresExpectation(t *testing.T) {
	for _, want := range []Expectation{ExpectClean, ExpectReproduces, ExpectCrashes} {
		ev := good()
		if d := Decide(ev, Expect{Want: want}); d.Verdict != Clean {
			t.Errorf("%s: %s", want, d.Verdict)
		}
		ev.Trace.DivergedTotal = 1
		if d := Decide(ev, Expect{Want: want}); d.Verdict != Reproduced {
			t.Errorf("%s: %s", want, d.Verdict)
		}
	}
}

func TestAttribute(t *testing.T) {
	r := &console.Report{Frames: []console.Frame{{Func: "a"}, {Func: "b", Module: "other"}}, FaultAddr: 0x1234}
	if got := Attribute(r, []string{"userblk"}, &trace.Result{HandedPages: []uint64{0x2000}}); got != "" {
		t.Errorf("attributed %q", got)
	}
	if got := Attribute(r, []string{"userblk", "other"}, nil); !strings.Contains(got, "b+0x0/0x0 [other]") {
		t.Errorf("frame: %q", got)
	}
	if got := Attribute(r, nil, &trace.Result{HandedPages: []uint64{0x1000}}); !strings.Contains(got, "1234") {
		t.Errorf("page: %q", got)
	}
	if got := Attribute(&console.Report{}, nil, &trace.Result{HandedPages: []uint64{0}}); got != "" {
		t.Errorf("no fault address: %q", got)
	}
}

func TestAggregate(t *testing.T) {
	rep := Decision{Verdict: Reproduced, Met: true}
	cl := Decision{Verdict: Clean}
	s := Aggregate([]Decision{rep, rep, cl}, 0)
	if s.Verdict != Reproduced || s.Met || s.MetRuns != 2 || s.Rate != "REPRODUCED 2/3, clean 1/3" {
		t.Errorf("%+v", s)
	}
	if s := Aggregate([]Decision{rep, rep, cl}, 0.6); !s.Met {
		t.Errorf("min rate 0.6 of 2/3: %+v", s)
	}
	if s := Aggregate([]Decision{rep, rep, cl}, 0.7); s.Met {
		t.Errorf("min rate 0.7 of 2/3: %+v", s)
	}
	if s := Aggregate([]Decision{rep, rep, rep}, 0); !s.Met || s.Rate != "REPRODUCED 3/3" {
		t.Errorf("%+v", s)
	}
	if s := Aggregate([]Decision{cl, {Verdict: Infra}}, 0); s.Verdict != Infra {
		t.Errorf("tie goes to the more severe: %+v", s)
	}
	if s := Aggregate(nil, 0); s.Met {
		t.Errorf("no runs met: %+v", s)
	}
	if s := Aggregate([]Decision{rep}, 1); !s.Met {
		t.Errorf("min rate 1: %+v", s)
	}
}

func TestSum(t *testing.T) {
	tot := Sum([]Stress{{Report: &stressreport.Report{Reads: 1, Writes: 2, Ops: 3, IOErrors: 4, Mismatches: 5}}, {}, {Report: &stressreport.Report{Reads: 10}}})
	if tot != (stressreport.Totals{Reads: 11, Writes: 2, Ops: 3, IOErrors: 4, Mismatches: 5}) {
		t.Errorf("%+v", tot)
	}
}

// A negative canary outranks too little evidence: more would not make the cell clean.
// A failed canary does not: then the evidence gap is the news.
func TestNegativeCanaryOutranksGaps(t *testing.T) {
	ev := good()
	ev.Highmem = true
	ev.Canary = Canary{State: CanaryNegative, Detail: "kernel threads only"}
	d := Decide(ev, Expect{Want: ExpectCannotDetect, Min: MinEvidence{IO: 1 << 30}})
	if d.Verdict != CannotDetect || len(d.Reasons) != 2 || !strings.HasPrefix(d.Reasons[0], "only ") || !strings.Contains(d.Reasons[1], "kernel threads only") {
		t.Errorf("negative canary with too little evidence: %s %q", d.Verdict, d.Reasons)
	}
	ev.Canary = Canary{State: CanaryFailed, Detail: "x"}
	if d := Decide(ev, Expect{Want: ExpectClean, Min: MinEvidence{IO: 1 << 30}}); d.Verdict != Inconclusive {
		t.Errorf("failed canary with too little evidence: %s", d.Verdict)
	}
	ev.Highmem = false
	ev.Canary = Canary{State: CanaryNegative}
	if d := Decide(ev, Expect{Want: ExpectClean, Min: MinEvidence{IO: 1 << 30}}); d.Verdict != Inconclusive {
		t.Errorf("no HIGHMEM: %s", d.Verdict)
	}
}
