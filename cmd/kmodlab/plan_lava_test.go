package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
)

const planLava = `lava:
  - name: lab-rpi4
    url: https://lava.example.org
    user: alice
    token_env: LAVA_TOKEN
    device_type: ssh
    max_jobs: 3
    boot: {kernel: lab, image: armv7-lpae}
`

// kmodlab plan --runners puts a lava: entry's cells into one shard of kind lava, whose
// args run them there (--runners, --lava) with up to max_jobs in the lab at once; the
// other targets shard as before. kmodlab merge takes the LAVA shard's results like any
// other's: its cells, verdicts and evidence, its INFRA cell an exit 2.
func TestPlanLavaShardsAndMerge(t *testing.T) {
	_, jobFile := loadPlanJob(t)
	runners := filepath.Join(t.TempDir(), "lava.yaml")
	os.WriteFile(runners, []byte(planLava), 0o644)
	t.Cleanup(func() { flagRunners, lavaKind = "", nil })
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no runners.yaml of the host
	plan := func(args ...string) ([]shard, string) {
		t.Helper()
		flagRunners, lavaKind = "", nil
		so, se := capture(t, func() {
			c := planCmd()
			c.SetArgs(append([]string{jobFile}, args...))
			c.SilenceUsage, c.SilenceErrors = true, true
			if err := c.Execute(); err != nil {
				os.Stderr.WriteString(err.Error())
			}
		})
		var s []shard
		if so != "" {
			if err := json.Unmarshal([]byte(so), &s); err != nil {
				t.Fatalf("plan output: %v\n%s", err, so)
			}
		}
		return s, se
	}

	shards, se := plan("--runners", runners, "--lava", "armv7-lpae=lab-rpi4", "--by", "cell", "--seed", "7")
	if se != "" {
		t.Fatal(se)
	}
	var names []string
	for _, s := range shards {
		names = append(names, s.Name+":"+string(s.Kind))
	}
	// --by cell splits the QEMU target, not the lab's cells: one run holds them, so
	// max_jobs bounds what is in the lab.
	if got := strings.Join(names, " "); got != "lava-lab-rpi4:lava x86_64-a:qemu x86_64-b:qemu pi4-a:board pi4-b:board" {
		t.Fatalf("shards: %s", got)
	}
	lv := shards[0]
	if got := strings.Join(lv.Args, " "); got != "--runners "+runners+" --lava armv7-lpae=lab-rpi4 --cell armv7-lpae/a --cell armv7-lpae/b --seed 7" || lv.InFlight != 3 {
		t.Errorf("the LAVA shard: args %q, in_flight %d", got, lv.InFlight)
	}
	if shards[1].InFlight != 0 || strings.Contains(strings.Join(shards[1].Args, " "), "--runners") {
		t.Errorf("a QEMU shard: %+v", shards[1])
	}
	// The shard's args select exactly its cells.
	j, err := job.Load(jobFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for i, a := range lv.Args {
		if a == "--cell" {
			pats = append(pats, lv.Args[i+1])
		}
	}
	if sel, err := job.Select(j.Cells(), pats); err != nil || len(sel) != 2 {
		t.Errorf("the LAVA shard's cells select %v (%v)", sel, err)
	}
	// --kind lava keeps only it; a route to an entry runners.yaml lacks is an error.
	if s, _ := plan("--runners", runners, "--lava", "armv7-lpae=lab-rpi4", "--kind", "lava"); len(s) != 1 || s[0].Name != "lava-lab-rpi4" {
		t.Errorf("--kind lava: %+v", s)
	}
	if _, se := plan("--runners", runners, "--lava", "armv7-lpae=lab-nope"); !strings.Contains(se, `no lava: entry "lab-nope"`) {
		t.Errorf("unknown entry: %q", se)
	}
	if _, se := plan("--lava", "armv7-lpae=lab-rpi4"); !strings.Contains(se, "--lava needs --runners") {
		t.Errorf("--lava without --runners: %q", se)
	}

	// Merge: the LAVA shard's results beside the others'.
	shards, _ = plan("--runners", runners, "--lava", "armv7-lpae=lab-rpi4")
	planFile := filepath.Join(t.TempDir(), "plan.json")
	data, _ := json.Marshal(shards)
	os.WriteFile(planFile, data, 0o644)
	lavaDir := shardResults(t, nil, "armv7-lpae/a", "armv7-lpae/b")
	r, _ := report.Read(filepath.Join(lavaDir, "results.json"))
	for _, c := range r.Cells {
		c.Runner = "lava"
		c.Evidence = append([]string{"ran as lava job 42 on rpi4-01 (https://lava.example.org/scheduler/job/42)"}, c.Evidence...)
	}
	r.Write(lavaDir)
	x86 := shardResults(t, nil, "x86_64/a", "x86_64/b")
	pi4 := shardResults(t, nil, "pi4/a", "pi4/b")
	out := filepath.Join(t.TempDir(), "merged")
	t.Setenv("GITHUB_STEP_SUMMARY", "")
	m, err := merge(mergeOptions{out: out, plans: []string{planFile}}, []string{x86, lavaDir, pi4}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Code() != 0 || len(m.Cells) != 6 {
		t.Errorf("merged: exit %d, %d cells", m.Code(), len(m.Cells))
	}
	merged, err := report.Read(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range merged.Cells {
		if strings.HasPrefix(c.ID, "armv7-lpae/") && (c.Runner != "lava" || !strings.Contains(strings.Join(c.Evidence, "\n"), "ran as lava job 42")) {
			t.Errorf("merged %s lost the LAVA shard's runner or evidence: %+v", c.ID, c)
		}
	}
	// A cell the lab cancelled is INFRA in the merge too: exit 2.
	canceled := shardResults(t, map[string]verdict.Verdict{"armv7-lpae/b": verdict.Infra}, "armv7-lpae/a", "armv7-lpae/b")
	if m, err := merge(mergeOptions{out: t.TempDir(), plans: []string{planFile}}, []string{x86, canceled, pi4}, &strings.Builder{}); err != nil || m.Code() != 2 {
		t.Errorf("a cancelled LAVA cell: %v, %v", m, err)
	}
	// Without the LAVA shard the merge says its cells are missing.
	if _, err := merge(mergeOptions{out: t.TempDir(), plans: []string{planFile}}, []string{x86, pi4}, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "cell armv7-lpae/a is in the plan but in no shard's results") {
		t.Errorf("missing LAVA shard: %v", err)
	}
}
