package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/console"
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
		{ID: "a/local", Outcome: Outcome{Verdict: verdict.Crashed, Met: true}, Expect: "reproduces", CrashSource: src},
		{ID: "a/kmap", Outcome: Outcome{Verdict: verdict.Crashed}, Expect: "clean", CrashSource: src},
		{ID: "a/copier", Outcome: Outcome{Verdict: verdict.Clean, Met: true}, Expect: "clean"},
	}}
	a := r.Annotations()
	if len(a) != 2 || !strings.HasPrefix(a[0], "::notice file=kmod/userblk.c,line=503,title=a/local") ||
		!strings.HasPrefix(a[1], "::error file=kmod/userblk.c,line=503,title=a/kmap") || !strings.Contains(a[1], "at userblk_ioctl+0x5dc") {
		t.Errorf("%q", a)
	}
}

// A shard's results.json is outside input: a bad one is an error naming its file and
// field, never a panic in Merge or an index out of range in the chart.
func TestMergeRejectsBadShards(t *testing.T) {
	good := `{"id":"x86_64/a","target":"x86_64","verdict":"clean","expect":"clean","met":true,"first_divergence_ms":-1,"stop_ms":-1}`
	for _, tc := range []struct{ json, want string }{
		{`{"job":"j","cells":[null]}`, "cells[0]: null"},
		{`{"job":"j","cells":[` + strings.Replace(good, `"first_divergence_ms":-1`, `"divergence_ms":[-5],"first_divergence_ms":-1`, 1) + `]}`, "cells[0] (x86_64/a).divergence_ms[0]: -5"},
		{`{"job":"j","cells":[` + strings.Replace(good, `"verdict":"clean"`, `"verdict":"PWNED"`, 1) + `]}`, `cells[0] (x86_64/a).verdict: "PWNED"`},
		{`{"job":"j","cells":[` + strings.Replace(good, `"expect":"clean"`, `"expect":"maybe"`, 1) + `]}`, `.expect: "maybe"`},
		{`{"job":"j","cells":[` + strings.Replace(good, `"target":"x86_64"`, `"target":"arm"`, 1) + `]}`, `.target: "arm"`},
		{`{"job":"j","cells":[` + strings.Replace(good, `"id":"x86_64/a"`, `"id":"x86_64/a\n::warning::x"`, 1) + `]}`, `.id: "x86_64/a\n::warning::x" holds a control character`},
		{`{"job":"j","cells":[` + strings.Replace(good, `"stop_ms":-1`, `"stop_ms":-7,"runs":[null,{"verdict":"clean","first_divergence_ms":-2}]`, 1) + `]}`, "stop_ms: -7"},
		{`{"job":"j","cells":[` + strings.Replace(good, `"stop_ms":-1`, `"stop_ms":-1,"runs":[{"verdict":"clean","first_divergence_ms":-2}]`, 1) + `]}`, "runs[0].first_divergence_ms: -2"},
		{`{"job":"j","cells":[` + strings.Replace(good, `"stop_ms":-1`, `"stop_ms":-1,"trace":{"transactions":-1},"timings":{"stress":-3}`, 1) + `]}`, "trace.transactions: -1"},
		{`{"job":"j","cells":[` + strings.Replace(good, `"stop_ms":-1`, `"stop_ms":-1,"stress":{"first_mismatch_ms":-1,"interleavings":{"close_busy":-4}}`, 1) + `]}`, "stress.interleavings.close_busy: -4"},
		{`{"job":"j","cells":[` + strings.Replace(good, `"stop_ms":-1`, `"stop_ms":-1,"stress":{"first_mismatch_ms":-1,"interleavings":{"a\n::warning::x":1}}`, 1) + `]}`, "holds a control character"},
		{`{"job":"j","seconds":-1,"cells":[` + good + `]}`, "seconds: -1"},
		{`{"job":"j","cells":[]}`, "cells: no cells"},
	} {
		dir := t.TempDir()
		file := filepath.Join(dir, "results.json")
		os.WriteFile(file, []byte(tc.json), 0o644)
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			var s *Shard
			if s, err = ReadShard(dir); err == nil {
				_, err = Merge(nil, []*Shard{s})
			}
		}()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s:\n err = %v\nwant %q with the file name", tc.json, err, tc.want)
		}
	}
}

func TestChartIgnoresNegativeTimes(t *testing.T) {
	r := &Run{Job: "j", Cells: []*Cell{{ID: "x/a", Target: "x", Outcome: Outcome{Verdict: verdict.Reproduced, Met: true}, Expect: "reproduces", Divergences: []int64{-5, 0, 10, 1 << 62}}}}
	if h := r.HTML(); strings.Contains(h, "report error") || !strings.Contains(h, "<svg") {
		t.Errorf("index.html with negative and huge times: %.300s", h)
	}
}

// FuzzReadShard: whatever a shard's results.json holds, reading and merging it is an
// error or a run every writer can render (seeds in testdata/fuzz/FuzzReadShard).
func FuzzReadShard(f *testing.F) {
	f.Add([]byte(`{"job":"j","cells":[{"id":"x86_64/a","target":"x86_64","verdict":"REPRODUCED","expect":"reproduces","met":true,"divergence_ms":[0,5,7],"first_divergence_ms":0,"stop_ms":9}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := ParseShard("shard/results.json", data)
		if err != nil {
			return
		}
		r, err := Merge(nil, []*Shard{{Dir: "shard", Run: run}})
		if err != nil {
			return
		}
		if h := r.HTML(); strings.HasPrefix(h, "<p>report error") {
			t.Fatalf("index.html: %s", h)
		}
		r.Markdown()
		r.Matrix()
		r.Details()
		r.Annotations()
		if _, err := r.JUnit(); err != nil {
			t.Fatalf("junit: %v", err)
		}
	})
}
