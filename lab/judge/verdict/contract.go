package verdict

import "github.com/kmodlab/kmodlab/stressreport"

// The contracts between a job, the stop rule, the verdict and the report are defined
// here once; lab/job, lab/judge/stop and lab/report import them.

// Verdict is what a cell showed.
type Verdict string

// Verdicts.
const (
	Reproduced   Verdict = "REPRODUCED"    // the trace or the data check shows divergence
	Crashed      Verdict = "CRASHED"       // the kernel crashed during the cell
	Hung         Verdict = "HUNG"          // something never finished: a step, a task, an RCU grace period
	TestFailed   Verdict = "TEST-FAILED"   // a KUnit or kselftest case failed (tests.go)
	Clean        Verdict = "clean"         // nothing diverged, with enough evidence, on a machine that could show it
	CannotDetect Verdict = "CANNOT-DETECT" // nothing diverged, but the canary says the machine cannot show it
	Inconclusive Verdict = "INCONCLUSIVE"  // nothing diverged, but the evidence cannot prove it
	Infra        Verdict = "INFRA"         // the lab could not judge: boot, SSH, build, setup, timeout
	BuildFailed  Verdict = "BUILD-FAILED"  // the job's own module or binary did not build (build.go)
	Built        Verdict = "built"         // a build sweep's cell: the module built (build.go)
)

// All is every verdict, most severe first: the order ties between repeats are broken
// in (what needs a person's attention first). A new verdict is added here, in its
// place, and given a colour in lab/report (writers.go: verdictColour; a test checks).
var All = []Verdict{Infra, BuildFailed, Crashed, Hung, TestFailed, Reproduced, Inconclusive, CannotDetect, Clean, Built}

// Severity is v's place in All counted from the end: higher is more severe, 0 unknown.
func (v Verdict) Severity() int {
	for i, x := range All {
		if x == v {
			return len(All) - i
		}
	}
	return 0
}

// Expectation is what a job says a cell should show (expect.default, expect.cells).
type Expectation string

// Expectations.
const (
	ExpectReproduces Expectation = "reproduces"
	ExpectClean      Expectation = "clean"
	ExpectCrashes    Expectation = "crashes"
	// ExpectCannotDetect: the machine is known to hide the bug class (its canary is
	// negative); met by CANNOT-DETECT only, so a cell that turns clean is noticed.
	ExpectCannotDetect Expectation = "cannot-detect"
	ExpectBuildFails   Expectation = "build-fails" // the job's module does not build for the cell's kernel
	ExpectBuilds       Expectation = "builds"      // a build sweep's cell (build.go)
)

// Expectations lists every expectation a job or a report may hold.
var Expectations = []Expectation{ExpectReproduces, ExpectCrashes, ExpectClean, ExpectCannotDetect, ExpectBuildFails, ExpectBuilds}

// Policy is what a failed stress step means (a job step's on_failure).
type Policy string

// Failure policies of a stress step.
const (
	PolicyInfra    Policy = "infra"    // a failed step means the lab could not judge
	PolicyEvidence Policy = "evidence" // a failed step is judged with its report
)

// MinEvidence is the least evidence a clean cell needs (a job's expect.min_evidence);
// the stop rule sizes stress by it too.
type MinEvidence struct {
	Transactions int   `yaml:"transactions" json:"transactions"` // trace transactions checked (reads and writes with both views)
	IO           int64 `yaml:"io" json:"io"`                     // verified reads and writes in the stress reports
	Ops          int64 `yaml:"ops" json:"ops"`                   // other checked operations (a fuzzer's calls)
}

// DefaultMinEvidence is min_evidence when a job does not set it.
var DefaultMinEvidence = MinEvidence{IO: 100}

// Sum adds up the stress reports.
func Sum(st []Stress) stressreport.Totals {
	var t stressreport.Totals
	for _, s := range st {
		if s.Report != nil {
			t.Add(s.Report.Totals())
		}
	}
	return t
}
