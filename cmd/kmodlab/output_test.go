package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/trace"
)

// capture runs f with os.Stdout and os.Stderr going to files and returns what each got.
func capture(t *testing.T, f func()) (string, string) {
	t.Helper()
	dir := t.TempDir()
	o, _ := os.Create(filepath.Join(dir, "stdout"))
	e, _ := os.Create(filepath.Join(dir, "stderr"))
	so, se := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = o, e
	defer func() { os.Stdout, os.Stderr = so, se }()
	f()
	o.Seek(0, io.SeekStart)
	e.Seek(0, io.SeekStart)
	ob, _ := io.ReadAll(o)
	eb, _ := io.ReadAll(e)
	return string(ob), string(eb)
}

// commandLines are the lines the Actions runner would run as workflow commands.
func commandLines(s string) []string {
	var out []string
	for _, l := range regexp.MustCompile(`\r\n|\r|\n`).Split(s, -1) {
		if strings.HasPrefix(strings.TrimLeftFunc(l, unicode.IsSpace), "::") || strings.Contains(l, "##[") {
			out = append(out, l)
		}
	}
	return out
}

// A shard's results.json is outside input: merge prints its evidence, errors and trace
// tables, and none of it may reach stdout as a workflow command, nor end summary.md's
// table cells or code fences early.
func TestMergeNeutralisesShardText(t *testing.T) {
	j, _ := loadPlanJob(t)
	shards, _ := planShards(j, &fleet.Fleet{}, "target", []string{"x86_64"}, "qemu", nil, nil)
	plan := filepath.Join(t.TempDir(), "plan.json")
	data, _ := json.Marshal(shards)
	os.WriteFile(plan, data, 0o644)
	table := "oper trans\n```\n# INJECTED-HEADING\n````\n[click](https://example.invalid)"
	r := &report.Run{Job: "p", JobFile: "p.yaml", Keys: []string{"mode"}, Cells: []*report.Cell{
		{ID: "x86_64/a", Target: "x86_64", Outcome: report.Outcome{Verdict: verdict.Reproduced, Reasons: []string{"a | b | c"}}, Expect: "clean",
			Evidence: []string{"::warning title=injected::from a shard", "trace:\n  \t::add-mask::x", "\u00a0::error::nbsp"},
			Error:    "first\r::notice::cr", Replay: "kmodlab run p.yaml ##[warning]x",
			Trace: &report.TraceSummary{First: &trace.Divergence{Kind: "write data differs", Detail: "::debug::d"}, FirstTable: table}},
		{ID: "x86_64/b", Target: "x86_64", Outcome: report.Outcome{Verdict: verdict.Clean, Met: true}, Expect: "clean", Evidence: []string{}},
	}}
	shard := t.TempDir()
	if err := r.Write(shard); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	t.Setenv("GITHUB_ACTIONS", "true") // annotations on: the lab's own commands are allowed
	t.Setenv("GITHUB_STEP_SUMMARY", "")
	so, se := capture(t, func() {
		c := mergeCmd()
		c.SetArgs([]string{"--out", out, "--plan", plan, shard})
		c.SilenceUsage, c.SilenceErrors = true, true
		c.Execute()
	})
	merged, err := report.Read(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]bool{}
	for _, a := range merged.Annotations() {
		ours[a] = true
	}
	for _, l := range commandLines(so + "\n" + se) {
		if !ours[l] {
			t.Errorf("a shard's text reaches the output as a workflow command: %q", l)
		}
	}
	if !strings.Contains(so, `\::warning title=injected::from a shard`) {
		t.Errorf("the evidence is not printed (neutralised):\n%s", so)
	}

	md, _ := os.ReadFile(filepath.Join(out, "summary.md"))
	fence, inFence := "", false
	for _, l := range strings.Split(string(md), "\n") {
		switch {
		case !inFence && strings.HasPrefix(l, "```"):
			fence, inFence = strings.TrimRight(l, " "), true
		case inFence && strings.TrimRight(l, " ") == fence:
			inFence = false
		case !inFence && (strings.Contains(l, "INJECTED-HEADING") || strings.Contains(l, "](https://example.invalid)")):
			t.Errorf("summary.md: the trace table escaped its code block: %q", l)
		}
		if strings.HasPrefix(l, "| x86_64 |") {
			if n := strings.Count(l, "|") - strings.Count(l, `\|`); n != 4 {
				t.Errorf("summary.md: row %q has %d cell borders, want 4", l, n)
			}
		}
		if strings.HasPrefix(l, "- **x86_64/a**") && strings.Contains(strings.ReplaceAll(l, `\|`, ""), "|") {
			t.Errorf("summary.md: reasons unescaped: %q", l)
		}
	}
}
