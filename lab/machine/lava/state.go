package lava

import (
	"errors"
	"fmt"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/console"
)

// LAVA job healths at the end (scheduler.jobs.show "health").
const (
	HealthComplete   = "Complete"
	HealthIncomplete = "Incomplete"
	HealthCanceled   = "Canceled"
)

// result is one finished LAVA job.
type result struct {
	id     int
	device string
	url    string
	health string
	log    []byte
	local  bool // run by a local lava-run
}

func (r *result) ref() string {
	where := "lava job " + fmt.Sprint(r.id)
	if r.local {
		where = "lava-run job " + fmt.Sprint(r.id)
	}
	if r.device != "" {
		where += " on " + r.device
	}
	if r.url != "" {
		where += " (" + r.url + ")"
	}
	return where
}

// ErrEnded is a LAVA job that did not complete: the cell is INFRA with it.
var ErrEnded = errors.New("the LAVA job did not complete")

// JobError is LAVA's own account of a job that did not complete.
type JobError struct {
	Health, Type, Message string
}

// Failure reads LAVA's error type and message from the job's results records (the
// lava suite's "job" case), "" when there is none.
func Failure(recs []Record) (typ, msg string) {
	for _, r := range recs {
		if r.Lvl != "results" {
			continue
		}
		m, ok := r.Msg.(map[string]any)
		if !ok || m["definition"] != "lava" || m["case"] != "job" {
			continue
		}
		typ, _ = m["error_type"].(string)
		msg, _ = m["error_msg"].(string)
		if res, _ := m["result"].(string); res == "fail" && typ == "" {
			typ = "Unknown"
		}
	}
	return typ, msg
}

// Outcome maps a LAVA job's end to the cell's: nil when the job completed, or when it
// ended Incomplete because the kernel crashed under the cell (that is judged: a crash
// is the cell's finding, not the lab's); an error (INFRA) naming LAVA's error type
// and message otherwise, and always for Canceled.
func Outcome(health, typ, msg string, crashed bool) error {
	switch health {
	case HealthComplete:
		return nil
	case HealthIncomplete:
		if crashed {
			return nil
		}
	case HealthCanceled:
	default:
		health = "in state " + health
	}
	detail := ""
	switch {
	case typ != "" && msg != "":
		detail = ": " + typ + " error: " + msg
	case typ != "":
		detail = ": " + typ + " error"
	case msg != "":
		detail = ": " + msg
	}
	return fmt.Errorf("%w: %s%s", ErrEnded, health, detail)
}

// end is the job's outcome, with the cell's log to tell a crash.
func (r *result) end(recs []Record, out *runner.CellLog) error {
	typ, msg := Failure(recs)
	text := out.Console + out.Kmsg
	for _, s := range out.Steps {
		text += s.Output
	}
	crashed := console.Fatal(console.Find(text))
	if err := Outcome(r.health, typ, msg, crashed); err != nil {
		return fmt.Errorf("%s: %w", r.ref(), err)
	}
	return nil
}
