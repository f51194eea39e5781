package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/stressreport"
)

// fakeLab is a batch kind: it answers each cell job with a log made from the job's
// own steps, as a lab would after running them.
type fakeLab struct {
	kmsg   []string // kernel-log texts the cell's window holds
	rep    stressreport.Report
	err    error
	jobs   []runner.CellJob
	status map[string]int // step name -> exit status
	notes  []string
}

func (l *fakeLab) RunCell(ctx context.Context, c runner.CellJob) (*runner.CellLog, error) {
	l.jobs = append(l.jobs, c)
	if l.err != nil {
		return nil, l.err
	}
	out := &runner.CellLog{Files: map[string][]byte{}, Ref: "lava job 7 on dev-01 (http://lab/scheduler/job/7)", Console: "Linux version 6.1\n", Notes: l.notes}
	for _, s := range c.Steps {
		r := runner.StepResult{Phase: s.Phase, Name: s.Name, Status: l.status[s.Name]}
		switch s.Name {
		case "kmsg-start":
			r.Output = "41\n"
		case "kmsg":
			for i, t := range l.kmsg {
				r.Output += fmt.Sprintf("6,%d,%d,-;%s\n", 42+i, 100_000_000+1000*i, t)
			}
		case "stress-start":
			r.Output = "99.5 10.0\n"
		}
		out.Steps = append(out.Steps, r)
	}
	data, _ := json.Marshal(l.rep)
	for _, f := range c.Fetch {
		if f == "/root/s.json" {
			out.Files[f] = data
		}
	}
	return out, nil
}

type batchMachines struct {
	machines
	lab *fakeLab
}

func (m batchMachines) Batch(string) runner.Batch { return m.lab }
func (m batchMachines) Acquire(context.Context, string, string) (runner.Runner, error) {
	return nil, errors.New("a batch kind is never acquired")
}

func runBatchJob(t *testing.T, lab *fakeLab) *report.Cell {
	t.Helper()
	f := newFake()
	return one(t, runJob(t, f, testJob, Options{Machines: batchMachines{machines{f}, lab}}))
}

func TestBatchCellJudgedLikeAnyCell(t *testing.T) {
	lab := &fakeLab{kmsg: reads(6, true, "0000000a"), rep: stressreport.Report{Tool: "blkstress", Reads: 20, Writes: 20, FirstMS: -1},
		notes: []string{"an earlier job's leftovers on the device, cleaned up before the cell: unloaded userblk"}}
	c := runBatchJob(t, lab)
	// No kmodlab image pins a lab's cell: the kernel release and the module do.
	if strings.Contains(c.Replay, "image=") || !strings.Contains(c.Replay, "--pin kernel=6.1.0-fake") {
		t.Errorf("replay: %s", c.Replay)
	}
	if c.Verdict != verdict.Reproduced || c.Trace == nil || c.Trace.Diverged != 6 || c.Stress.Reads != 20 {
		t.Fatalf("%s %v", c.Verdict, c.Evidence)
	}
	ev := strings.Join(c.Evidence, "\n")
	for _, want := range []string{"ran as lava job 7 on dev-01 (http://lab/scheduler/job/7)\nan earlier job's leftovers", "cannot stop early at a sure verdict", "kernel log: records 42..71 (30 read)"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	if !strings.HasPrefix(c.Evidence[len(c.Evidence)-1], "verdict: ") {
		t.Errorf("the verdict line is not last: %v", c.Evidence)
	}
	// The job is the cell's steps in order, between the lab's own reads.
	var names []string
	for _, s := range lab.jobs[0].Steps {
		names = append(names, s.Phase+"/"+s.Name)
	}
	if got := strings.Join(names, " "); got != "lab/highmem lab/kmsg-start setup/insmod lab/module-addresses lab/stress-start stress/io teardown/rmmod collect/kmsg" {
		t.Errorf("steps %s", got)
	}
	if s := lab.jobs[0].Steps[5]; !strings.HasPrefix(s.Cmd, "rm -f '/root/s.json'; ") {
		t.Errorf("the stress step does not remove an old report first: %q", s.Cmd)
	}
}

func TestBatchCleanAndFailedStep(t *testing.T) {
	lab := &fakeLab{kmsg: reads(6, false, "0000000a"), rep: stressreport.Report{Tool: "blkstress", Reads: 20, Writes: 20, FirstMS: -1}}
	if c := runBatchJob(t, lab); c.Verdict != verdict.Clean {
		t.Fatalf("clean: %s %v", c.Verdict, c.Evidence)
	}
	lab.status = map[string]int{"insmod": 1}
	if c := runBatchJob(t, lab); c.Verdict != verdict.Infra || !strings.Contains(c.Error, `setup step "insmod": exit status 1`) {
		t.Fatalf("failed setup: %s %q", c.Verdict, c.Error)
	}
}

func TestBatchJobErrorIsInfra(t *testing.T) {
	lab := &fakeLab{err: errors.New("lava job 9 on dev-02: the LAVA job did not complete: Canceled: Canceled error: Canceled by alice")}
	c := runBatchJob(t, lab)
	if c.Verdict != verdict.Infra || !strings.Contains(c.Error, "Canceled by alice") {
		t.Fatalf("%s %q", c.Verdict, c.Error)
	}
}
