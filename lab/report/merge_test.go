package report

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/console"
)

// shards writes sample()'s cells as two shards (one per target) and reads them back.
func shardsOf(t *testing.T, r *Run, groups ...[]int) []*Shard {
	t.Helper()
	var out []*Shard
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, g := range groups {
		s := &Run{Job: r.Job, JobFile: "jobs/j.yaml", Keys: []string{"mode"}, Version: "v1",
			Started: start.Add(time.Duration(i) * 10 * time.Second), Seconds: 30}
		for _, ci := range g {
			s.Cells = append(s.Cells, r.Cells[ci])
		}
		dir := filepath.Join(t.TempDir(), "shard")
		if err := s.Write(dir); err != nil {
			t.Fatal(err)
		}
		sh, err := ReadShard(dir)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sh)
	}
	return out
}

func ids(r *Run) []string {
	var out []string
	for _, c := range r.Cells {
		out = append(out, c.ID)
	}
	return out
}

func TestMergeCarriesCellsUnchanged(t *testing.T) {
	r := sample()
	r.Cells[0].Crash = &console.Report{Title: "BUG: x"}
	r.Cells[0].Timings = map[string]float64{"stress": 3}
	want := []string{"arm/atomic", "arm/kmap", "x86/atomic", "x86/kmap"}
	// Shards in another order than the plan: the plan's order wins.
	m, err := Merge(want, shardsOf(t, r, []int{2, 3}, []int{0, 1}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(m), " "); got != strings.Join(want, " ") {
		t.Errorf("cells %s, want %s", got, want)
	}
	for i, c := range m.Cells {
		a, _ := json.Marshal(c)
		b, _ := json.Marshal(r.Cells[i])
		if string(a) != string(b) {
			t.Errorf("cell %s changed in the merge:\n got %s\nwant %s", c.ID, a, b)
		}
	}
	if m.Job != "j" || strings.Join(m.Targets, ",") != "arm,x86" || m.Seconds != 40 {
		t.Errorf("run fields: job %q targets %v seconds %v (want 40: first start to last end)", m.Job, m.Targets, m.Seconds)
	}
	if m.Code() != 2 || m.ExitCode != 2 {
		t.Errorf("code %d, want 2", m.Code())
	}
}

func TestMergeMissingDuplicateAndForeign(t *testing.T) {
	r := sample()
	want := []string{"arm/atomic", "arm/kmap", "x86/atomic", "x86/kmap"}
	sh := shardsOf(t, r, []int{0, 1}, []int{2})
	_, err := Merge(want, sh)
	if err == nil || !strings.Contains(err.Error(), "cell x86/kmap is in the plan but in no shard's results") ||
		!strings.Contains(err.Error(), sh[0].Dir) {
		t.Errorf("missing cell: %v", err)
	}
	sh = shardsOf(t, r, []int{0, 1}, []int{2, 3}, []int{1})
	_, err = Merge(want, sh)
	if err == nil || !strings.Contains(err.Error(), "cell arm/kmap is reported by two shards: "+sh[0].Dir+" and "+sh[2].Dir) {
		t.Errorf("duplicate cell: %v", err)
	}
	_, err = Merge(want[:3], shardsOf(t, r, []int{0, 1}, []int{2, 3}))
	if err == nil || !strings.Contains(err.Error(), "cell x86/kmap (from ") || !strings.Contains(err.Error(), "is not in the plan") {
		t.Errorf("cell outside the plan: %v", err)
	}
	sh = shardsOf(t, r, []int{0, 1}, []int{2, 3})
	sh[1].Run.Job = "other"
	if _, err = Merge(nil, sh); err == nil || !strings.Contains(err.Error(), "shards of different jobs") {
		t.Errorf("different jobs: %v", err)
	}
	if _, err := ReadShard(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no results.json") {
		t.Errorf("empty dir: %v", err)
	}
}

func TestMergeExitCodes(t *testing.T) {
	r := sample()
	for _, tc := range []struct {
		cells []int
		code  int
	}{{[]int{0, 3}, 0}, {[]int{0, 1, 3}, 1}, {[]int{0, 2}, 2}} {
		var want []string
		var groups [][]int
		for _, c := range tc.cells {
			want = append(want, r.Cells[c].ID)
			groups = append(groups, []int{c})
		}
		m, err := Merge(want, shardsOf(t, r, groups...))
		if err != nil {
			t.Fatal(err)
		}
		if m.Code() != tc.code {
			t.Errorf("cells %v: code %d, want %d", want, m.Code(), tc.code)
		}
	}
}

func TestAnnotations(t *testing.T) {
	r := sample()
	r.JobFile = "jobs/j.yaml"
	a := r.Annotations()
	if len(a) != 2 {
		t.Fatalf("%d annotations, want 2 (the missed and the infra cell):\n%s", len(a), strings.Join(a, "\n"))
	}
	if !strings.HasPrefix(a[0], "::error file=jobs/j.yaml,title=arm/kmap%3A REPRODUCED::arm/kmap: REPRODUCED, expected clean%0Adata: 2 blocks") {
		t.Errorf("annotation: %s", a[0])
	}
	if strings.Contains(a[1], "\n") || !strings.Contains(a[1], "boot timeout") {
		t.Errorf("annotation must be one line with the error: %q", a[1])
	}
}

// A crash placed at a source line is annotated at that line: an error when the cell
// missed its expectation, a notice when the job expected it.
func TestAnnotationAtCrashSource(t *testing.T) {
	src := &Source{File: "kmod/userblk.c", Line: 503, Frame: "userblk_ioctl+0x5dc/0xd8c [userblk] (kmod/userblk.c:503)"}
	r := &Run{JobFile: "jobs/j.yaml", Cells: []*Cell{
		{ID: "a/local", Verdict: Crashed, Expect: "reproduces", Met: true, CrashSource: src},
		{ID: "a/kmap", Verdict: Crashed, Expect: "clean", CrashSource: src},
		{ID: "a/copier", Verdict: Clean, Expect: "clean", Met: true},
	}}
	a := r.Annotations()
	if len(a) != 2 || !strings.HasPrefix(a[0], "::notice file=kmod/userblk.c,line=503,title=a/local") ||
		!strings.HasPrefix(a[1], "::error file=kmod/userblk.c,line=503,title=a/kmap") || !strings.Contains(a[1], "at userblk_ioctl+0x5dc") {
		t.Errorf("%q", a)
	}
}
