package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
)

const planJob = `name: p
targets: [armv7-lpae, x86_64, pi4]
matrix: {mode: [a, b]}
stress: [{run: "true"}]
expect: {default: clean, cells: {"armv7-lpae/a": reproduces}}
`

func loadPlanJob(t *testing.T) (*job.Job, string) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644)
	f := filepath.Join(dir, "p.yaml")
	os.WriteFile(f, []byte(planJob), 0o644)
	j, err := job.Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return j, f
}

func TestPlanShards(t *testing.T) {
	j, _ := loadPlanJob(t)
	s, err := planShards(j, &fleet.Fleet{}, "target", nil, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(s)
	want := `[{"name":"armv7-lpae","kind":"qemu","args":["--cell","armv7-lpae/a","--cell","armv7-lpae/b"],"cells":["armv7-lpae/a","armv7-lpae/b"]},` +
		`{"name":"x86_64","kind":"qemu","args":["--cell","x86_64/a","--cell","x86_64/b"],"cells":["x86_64/a","x86_64/b"]},` +
		`{"name":"pi4","kind":"board","args":["--cell","pi4/a","--cell","pi4/b"],"cells":["pi4/a","pi4/b"]}]`
	if string(data) != want {
		t.Errorf("plan:\n got %s\nwant %s", data, want)
	}
	seed := int64(7)
	s, err = planShards(j, &fleet.Fleet{}, "cell", []string{"armv7-lpae", "pi4/b"}, "qemu", &seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[0].Name != "armv7-lpae-a" || strings.Join(s[1].Args, " ") != "--cell armv7-lpae/b --seed 7" {
		t.Errorf("by cell, qemu only, seed: %+v", s)
	}
	s, _ = planShards(j, &fleet.Fleet{}, "target", nil, "board", nil, nil)
	if len(s) != 1 || s[0].Name != "pi4" {
		t.Errorf("boards only: %+v", s)
	}
	// Every cell of the job is in exactly one shard, and the args select exactly it.
	s, _ = planShards(j, &fleet.Fleet{}, "cell", nil, "", nil, nil)
	seen := map[string]int{}
	for _, sh := range s {
		var pats []string
		for i := 0; i+1 < len(sh.Args); i += 2 {
			pats = append(pats, sh.Args[i+1])
		}
		sel, err := job.Select(j.Cells(), pats)
		if err != nil || len(sel) != 1 || sel[0].ID != sh.Cells[0] {
			t.Errorf("shard %s args select %v (%v)", sh.Name, sel, err)
		}
		seen[sh.Cells[0]]++
	}
	if len(seen) != len(j.Cells()) {
		t.Errorf("%d cells planned, job has %d", len(seen), len(j.Cells()))
	}
	if _, err := planShards(j, &fleet.Fleet{}, "machine", nil, "", nil, nil); err == nil {
		t.Error("--by machine accepted")
	}
	if _, err := planShards(j, &fleet.Fleet{}, "target", []string{"nope"}, "", nil, nil); err == nil || !strings.Contains(err.Error(), "matches no cell") {
		t.Errorf("unknown cell: %v", err)
	}
}

// shardResults writes a shard's results directory with the given cells of the job.
func shardResults(t *testing.T, verdicts map[string]verdict.Verdict, ids ...string) string {
	t.Helper()
	r := &report.Run{Job: "p", JobFile: "p.yaml", Keys: []string{"mode"}}
	for _, id := range ids {
		target, _, _ := strings.Cut(id, "/")
		expect := verdict.ExpectClean
		if id == "armv7-lpae/a" {
			expect = verdict.ExpectReproduces
		}
		v := verdicts[id]
		if v == "" {
			v = map[verdict.Expectation]verdict.Verdict{"clean": verdict.Clean, "reproduces": verdict.Reproduced}[expect]
		}
		r.Cells = append(r.Cells, &report.Cell{ID: id, Target: target, Outcome: report.Outcome{Verdict: v, Met: report.Meets(v, expect)}, Expect: expect, Evidence: []string{"evidence of " + id}, Replay: "kmodlab run p.yaml --cell " + id + " --seed 3"})
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMergeCommand(t *testing.T) {
	j, jobFile := loadPlanJob(t)
	shards, _ := planShards(j, &fleet.Fleet{}, "target", nil, "qemu", nil, nil)
	plan := filepath.Join(t.TempDir(), "plan.json")
	data, _ := json.Marshal(shards)
	os.WriteFile(plan, data, 0o644)
	arm := shardResults(t, nil, "armv7-lpae/a", "armv7-lpae/b")
	x86 := shardResults(t, map[string]verdict.Verdict{"x86_64/b": verdict.Reproduced}, "x86_64/a", "x86_64/b")
	t.Setenv("GITHUB_STEP_SUMMARY", filepath.Join(t.TempDir(), "step-summary.md"))
	out := filepath.Join(t.TempDir(), "merged")
	var ann bytes.Buffer
	r, err := merge(mergeOptions{out: out, plans: []string{plan}, annotate: true}, []string{x86, arm}, &ann)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code() != 1 {
		t.Errorf("exit code %d, want 1 (x86_64/b missed its expectation)", r.Code())
	}
	if a := ann.String(); strings.Count(a, "::error ") != 1 || !strings.Contains(a, "title=x86_64/b%3A REPRODUCED::x86_64/b: REPRODUCED, expected clean") {
		t.Errorf("annotations:\n%s", a)
	}
	md, _ := os.ReadFile(filepath.Join(out, "summary.md"))
	for _, want := range []string{"| target | a | b |", "| armv7-lpae | REPRODUCED | clean |", "| x86_64 | clean | **REPRODUCED** (expected clean) |", "Exit code 1"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	step, _ := os.ReadFile(os.Getenv("GITHUB_STEP_SUMMARY"))
	if string(step) != string(md) {
		t.Errorf("step summary differs from summary.md")
	}
	junit, _ := os.ReadFile(filepath.Join(out, "junit.xml"))
	for _, want := range []string{`tests="4" failures="1" errors="0"`, `<testcase name="x86_64/b"`, `<failure message="REPRODUCED, expected clean"`, "replay: kmodlab run p.yaml --cell armv7-lpae/a --seed 3"} {
		if !strings.Contains(string(junit), want) {
			t.Errorf("junit.xml lacks %q:\n%s", want, junit)
		}
	}
	for _, f := range []string{"results.json", "index.html"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}

	// All as expected: 0. An infrastructure cell: 2.
	if r, err := merge(mergeOptions{out: t.TempDir(), jobFile: jobFile, cells: []string{"armv7-lpae"}}, []string{arm}, &ann); err != nil || r.Code() != 0 {
		t.Errorf("--job with --cell: code %v, err %v", r, err)
	}
	infra := shardResults(t, map[string]verdict.Verdict{"x86_64/a": verdict.Infra}, "x86_64/a", "x86_64/b")
	if r, err := merge(mergeOptions{out: t.TempDir(), plans: []string{plan}}, []string{arm, infra}, &ann); err != nil || r.Code() != 2 {
		t.Errorf("infra: %v, %v", r, err)
	}

	// A missing shard and a duplicated shard.
	_, err = merge(mergeOptions{out: t.TempDir(), plans: []string{plan}}, []string{arm}, &ann)
	if err == nil || !strings.Contains(err.Error(), "cell x86_64/a is in the plan but in no shard's results") {
		t.Errorf("missing shard: %v", err)
	}
	_, err = merge(mergeOptions{out: t.TempDir(), plans: []string{plan}}, []string{arm, x86, arm}, &ann)
	if err == nil || !strings.Contains(err.Error(), "cell armv7-lpae/a is reported by two shards: "+arm+" and "+arm) {
		t.Errorf("duplicated shard: %v", err)
	}
	_, err = merge(mergeOptions{out: t.TempDir(), plans: []string{plan}}, []string{arm, t.TempDir()}, &ann)
	if err == nil || !strings.Contains(err.Error(), "no results.json") {
		t.Errorf("empty results dir: %v", err)
	}
	if _, err = merge(mergeOptions{out: t.TempDir()}, []string{arm}, &ann); err == nil || !strings.Contains(err.Error(), "--plan") {
		t.Errorf("no plan: %v", err)
	}
}
