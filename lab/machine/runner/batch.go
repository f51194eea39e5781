package runner

import (
	"context"
	"os"
	"time"
)

// Batch is a kind of machine that cannot be driven command by command: a lab (LAVA)
// owns the boot, the console and the power, and takes a cell only whole, as one job.
// The pipeline hands it everything the cell needs and judges what comes back with the
// same oracle, crash detector, symbolizer and verdict code as an interactive cell.
// A batch cell cannot stop early at a sure verdict.
type Batch interface {
	// RunCell renders the cell as one remote job, submits it, follows it (progress
	// lines on the way: a queue wait shows as such), and fetches its log and files.
	// An error is the lab's (the job never ran the cell, or ended Incomplete or
	// Canceled): the cell is INFRA with it.
	RunCell(ctx context.Context, c CellJob) (*CellLog, error)
}

// CellJob is one cell as a whole job: what the machine needs, in order.
type CellJob struct {
	Target string     // the target name as the job file gives it
	Cell   string     // the cell's ID, "target/param…"
	Files  []CellFile // modules, binaries, canary, kernel-log agent and the job's files
	Steps  []CellStep // setup, stress and teardown steps, in order
	Fetch  []string   // files on the machine whose contents come back (stress reports, files:)
	LogDir string     // the cell's log directory on the host: raw logs of the job go here
}

// CellFile is a host file the machine gets before the first step.
type CellFile struct {
	Local, Remote string
	Mode          os.FileMode
}

// CellStep is one step of the cell.
type CellStep struct {
	Phase, Name, Cmd string // phase: setup, stress or teardown
	Timeout          time.Duration
	Background       bool // keeps running through the later steps
}

// CellLog is what a batch job brought back.
type CellLog struct {
	Steps   []StepResult      // one per step that ran, in order
	Console string            // the job's console text (oopses, the init's lines)
	Kmsg    string            // the kernel log's records as the kernel-log agent prints them
	Files   map[string][]byte // CellJob.Fetch's contents by remote path; a missing one is absent
	Ref     string            // where it ran, for the evidence: "lava job 42 on rpi4-01 (URL)"
	Notes   []string          // the lab's remarks on the job, for the evidence after Ref
}

// StepResult is one step's end.
type StepResult struct {
	Phase, Name string
	Status      int  // exit status; -1 when it did not finish
	TimedOut    bool // killed at its timeout
	Output      string
}
