package main

import (
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/job"
)

// --set takes one key=value per flag, and the value may hold commas; --pin keeps its
// comma list.
func TestParseKV(t *testing.T) {
	m, err := parseKV([]string{"stress=1s,2s", "args=a=b"}, "--set", false)
	if err != nil || len(m) != 2 || m["stress"] != "1s,2s" || m["args"] != "a=b" {
		t.Errorf("--set: %v %v", m, err)
	}
	m, err = parseKV([]string{"image=ab,module=cd"}, "--pin", true)
	if err != nil || len(m) != 2 || m["image"] != "ab" || m["module"] != "cd" {
		t.Errorf("--pin: %v %v", m, err)
	}
	if _, err := parseKV([]string{"a=1", "a=2"}, "--set", false); err == nil {
		t.Error("a key given twice is accepted")
	}
}

// run, bisect and lava render take --set through parseSets: a variable the job does not
// have fails, naming it, before anything is built.
func TestParseSetsChecksTheJob(t *testing.T) {
	j, err := job.Load("../../jobs/highmem-coherency.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := parseSets(j, []string{"stress=2s"}); err != nil || m["stress"] != "2s" {
		t.Errorf("stress=2s: %v %v", m, err)
	}
	_, err = parseSets(j, []string{"stres=2s"})
	if err == nil || !strings.Contains(err.Error(), "stres") {
		t.Errorf("stres=2s: %v, want an error naming stres", err)
	}
}
