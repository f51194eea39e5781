package lava

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

func TestOutcome(t *testing.T) {
	cases := []struct {
		health, typ, msg string
		crashed          bool
		want             string // "" no error (judged)
	}{
		{HealthComplete, "", "", false, ""},
		{HealthIncomplete, "Infrastructure", "Unable to connect to 127.0.0.1", false, "Incomplete: Infrastructure error: Unable to connect to 127.0.0.1"},
		{HealthIncomplete, "Test", "lava-test-shell timed out after 1200 seconds", true, ""}, // the kernel crashed: judged
		{HealthCanceled, "Canceled", "Canceled by alice", true, "Canceled: Canceled error: Canceled by alice"},
		{HealthCanceled, "", "", false, "Canceled"},
		{"Unknown", "", "", false, "in state Unknown"},
	}
	for _, tc := range cases {
		err := Outcome(tc.health, tc.typ, tc.msg, tc.crashed)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it judged", tc.health, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrEnded) || !strings.HasSuffix(err.Error(), tc.want)):
			t.Errorf("%s %s: %v, want …%s", tc.health, tc.typ, err, tc.want)
		}
	}
}

// testdata/job.log is a job's log as the server gives it (a YAML list of records), its
// last line torn.
func TestReadLog(t *testing.T) {
	jobLog, err := os.ReadFile("testdata/job.log")
	if err != nil {
		t.Fatal(err)
	}
	// lava-run writes one JSON object a line, the server a YAML list: both are read.
	if r := ParseLog(bytes.ReplaceAll(jobLog, []byte("- {"), []byte("{"))); len(r) != 14 || r[13].Lvl != "results" {
		t.Fatalf("lava-run's format: %d records", len(r))
	}
	recs := ParseLog(jobLog)
	if len(recs) != 14 {
		t.Fatalf("%d records (a torn last line is skipped, the rest kept)", len(recs))
	}
	c := runner.CellJob{Steps: []runner.CellStep{{Phase: "setup", Name: "insmod"}, {Phase: "stress", Name: "odirect"}, {Phase: "teardown", Name: "rmmod"}}}
	got := Read(recs, c)
	if len(got.Steps) != 2 {
		t.Fatalf("steps %+v (the teardown never began)", got.Steps)
	}
	if s := got.Steps[0]; s.Name != "insmod" || s.Status != 0 || s.Output != "a \"quoted\" line\n\n" {
		t.Errorf("insmod %+v", s)
	}
	if s := got.Steps[1]; s.Phase != "stress" || s.Status != 143 || !s.TimedOut {
		t.Errorf("odirect %+v", s)
	}
	if string(got.Files["/root/s.json"]) != "{\"mismatches\": 0,\n \"reads\": 4}\n" {
		t.Errorf("file %q", got.Files["/root/s.json"])
	}
	if _, ok := got.Files["/root/t.json"]; ok {
		t.Error("a missing file came back")
	}
	if got.Console != "Linux version 6.1.0\n[  3.1] userblk: loaded \n" {
		t.Errorf("console %q", got.Console)
	}
	if typ, msg := Failure(recs); typ != "Test" || msg != "boom" {
		t.Errorf("failure %q %q", typ, msg)
	}
}
