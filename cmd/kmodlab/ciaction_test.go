package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/ci-action.sh hands a shard's args to kmodlab one array element each: an
// argument with a space or a newline is never split into two (a value holding
// "\n--out /elsewhere" became its own arguments), and control characters are refused.
func TestCIActionShardArgs(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("no jq")
	}
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "kmodlab")
	os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do printf '[%s]\\n' \"$a\"; done > "+args+"\n"), 0o755)
	run := func(shard string) (string, error) {
		os.Remove(args)
		cmd := exec.Command("bash", "../../scripts/ci-action.sh", "shard")
		cmd.Env = append(os.Environ(), "KMODLAB="+fake, "INPUT_JOB=j.yaml", "INPUT_SHARD="+shard, "INPUT_OUT="+filepath.Join(dir, "out"),
			"GITHUB_OUTPUT="+filepath.Join(dir, "output"))
		out, err := cmd.CombinedOutput()
		got, _ := os.ReadFile(args)
		if err != nil {
			return string(out), err
		}
		return string(got), nil
	}
	got, err := run(`{"name":"x86_64","args":["--cell","x86_64/a b","--seed","7"]}`)
	if want := "[run]\n[j.yaml]\n[--out]\n[" + filepath.Join(dir, "out") + "]\n[--cell]\n[x86_64/a b]\n[--seed]\n[7]\n"; err != nil || got != want {
		t.Errorf("args: %v\n%s\nwant\n%s", err, got, want)
	}
	got, err = run(`{"name":"x86_64","args":["--cell","x86_64/a\n--out /elsewhere"]}`)
	if err == nil || !strings.Contains(got, "control characters") {
		t.Errorf("an argument with a newline: %v %q", err, got)
	}
}
