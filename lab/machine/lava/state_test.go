package lava

import (
	"errors"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
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
	} {
		err := Outcome(tc.health, tc.typ, tc.msg, tc.crashed)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it judged", tc.health, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrEnded) || !strings.HasSuffix(err.Error(), tc.want)):
			t.Errorf("%s %s: %v, want …%s", tc.health, tc.typ, err, tc.want)
		}
	}
}

const jobLog = `- {"dt": "2025-01-01T10:00:00.1", "lvl": "info", "msg": "start: 1 deploy"}
- {"dt": "2025-01-01T10:00:01.1", "lvl": "target", "msg": "Linux version 6.1.0"}
- {"dt": "2025-01-01T10:00:02.1", "lvl": "target", "msg": "KMODLAB-STEP-BEGIN 0 setup insmod"}
- {"dt": "2025-01-01T10:00:02.2", "lvl": "target", "msg": "KMODLAB-OUT 0: a \\\"quoted\\\" line"}
- {"dt": "2025-01-01T10:00:02.2", "lvl": "target", "msg": "KMODLAB-OUT 0:"}
- {"dt": "2025-01-01T10:00:02.3", "lvl": "target", "msg": "KMODLAB-STEP-END 0 0 0"}
- {"dt": "2025-01-01T10:00:02.4", "lvl": "target", "msg": "[  3.1] userblk: loaded KMODLAB-STEP-BEGIN 1 stress odirect"}
- {"dt": "2025-01-01T10:00:09.0", "lvl": "target", "msg": "KMODLAB-STEP-END 1 143 1"}
- {"dt": "2025-01-01T10:00:09.1", "lvl": "target", "msg": "KMODLAB-FILE-BEGIN /root/s.json"}
- {"dt": "2025-01-01T10:00:09.2", "lvl": "target", "msg": "KMODLAB-FILE: eyJtaXNtYXRjaGVzIjogMCwK"}
- {"dt": "2025-01-01T10:00:09.2", "lvl": "target", "msg": "KMODLAB-FILE: ICJyZWFkcyI6IDR9Cg=="}
- {"dt": "2025-01-01T10:00:09.3", "lvl": "target", "msg": "KMODLAB-FILE-END /root/s.json"}
- {"dt": "2025-01-01T10:00:09.4", "lvl": "target", "msg": "KMODLAB-FILE-MISSING /root/t.json"}
- {"dt": "2025-01-01T10:00:09.5", "lvl": "results", "msg": {"definition": "lava", "case": "job", "result": "fail", "error_type": "Test", "error_msg": "boom"}}
- {"dt": "2025-01-01T10:00:09.6", "lvl": "inf`

func TestReadLog(t *testing.T) {
	// lava-run writes one JSON object a line, the server a YAML list: both are read.
	if r := ParseLog([]byte(strings.ReplaceAll(jobLog, "- {", "{"))); len(r) != 14 || r[13].Lvl != "results" {
		t.Fatalf("lava-run's format: %d records", len(r))
	}
	recs := ParseLog([]byte(jobLog))
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
