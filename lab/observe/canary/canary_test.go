package canary

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sample is one canary run's counters, as the module prints them.
type sample struct {
	local, of, highmem, user, pan int
	oneCPU                        bool
}

func (s sample) line() string {
	cpus := "0,3"
	if s.oneCPU {
		cpus = "0,0"
	}
	return fmt.Sprintf("kmodlab-canary: local=%d kmap=0 of %d highmem=%d cpus=%s user_local=%d user_kmap=0 ttbr0_pan=%d",
		s.local, s.of, s.highmem, cpus, s.user, s.pan)
}

func TestParseStates(t *testing.T) {
	for _, tc := range []struct {
		name          string
		runs          []sample // the log's canary lines; the last one is the result
		state, reason string
	}{
		{"6.1: both writers see it", []sample{{local: 1874, of: 2000, highmem: 16, user: 1871}}, Positive, ""},
		{"6.12 under TCG: the kernel thread only", []sample{{local: 1866, of: 2000, highmem: 16, pan: 1}},
			Negative, KthreadOnly + " under TCG (CPU_TTBR0_PAN)"},
		{"kernel thread only, no PAN", []sample{{local: 5, of: 2000, highmem: 16}}, Negative, KthreadOnly},
		{"nothing stale", []sample{{of: 2000, highmem: 16}}, Negative, "no stale mapping seen by any writer"},
		{"a single stale handover to the consumer is enough", []sample{{of: 2000, highmem: 16, user: 1, pan: 1}}, Positive, ""},
		{"x86_64", []sample{{}}, NoHighmem, ""},
		{"one CPU", []sample{{highmem: 16, oneCPU: true}}, Negative, "one CPU online: no handover to another CPU to measure"},
		{"the last line counts", []sample{{local: 9, of: 2000, highmem: 16, user: 9}, {local: 7, of: 2000, highmem: 16, pan: 1}},
			Negative, KthreadOnly + " under TCG (CPU_TTBR0_PAN)"},
	} {
		log := tc.runs[0].line()
		if len(tc.runs) > 1 { // lines as dmesg prints them, with a timestamp
			log = ""
			for i, s := range tc.runs {
				log += fmt.Sprintf("[ %d.0] %s\n", i+1, s.line())
			}
		}
		want := tc.runs[len(tc.runs)-1]
		r, err := Parse(log)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.State != tc.state || r.Reason != tc.reason || r.UserLocal != want.user || r.Local != want.local {
			t.Errorf("%s: got %+v, want state %s reason %q user %d kthread %d", tc.name, r, tc.state, tc.reason, want.user, want.local)
		}
	}
}

func TestParseFields(t *testing.T) {
	r, err := Parse("kmodlab-canary: local=11 kmap=2 of 300 highmem=15 cpus=0,1 user_local=13 user_kmap=4 ttbr0_pan=1")
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Local: 11, Kmap: 2, UserLocal: 13, UserKmap: 4, Iterations: 300, Highmem: 15, TTBR0PAN: true, State: Positive}
	if *r != want {
		t.Errorf("got %+v, want %+v", *r, want)
	}
	if d := r.Detail(); d != "stale 13/300 to a consumer via kmap_local_page, 4/300 via kmap; kernel thread 11/300, 2/300" {
		t.Errorf("detail %q", d)
	}
	r.Reason = "why"
	if d := r.Detail(); !strings.HasPrefix(d, "why; stale 13/300") {
		t.Errorf("detail with a reason %q", d)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse("kmodlab-canary: kernel-thread run failed: -12\nkmodlab-canary: consumer run failed: -110\n"); err == nil || err.Error() != "canary: consumer run failed: -110" {
		t.Errorf("a failed run (the last one counts): %v", err)
	}
	// A line of the old module (kernel-thread writer only) is not a result: it cannot
	// say what a consumer sees.
	if _, err := Parse("kmodlab-canary: local=1875 kmap=0 of 2000 highmem=16 cpus=0,1"); err == nil {
		t.Errorf("an old line was taken")
	}
	if _, err := Parse(""); err == nil || !strings.Contains(err.Error(), "no kmodlab-canary line") {
		t.Errorf("empty: %v", err)
	}
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	if err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(filepath.Join(dir, "kmodlab_canary.c"))
	if err != nil || !strings.Contains(string(c), "copy_from_user(shared_addr") {
		t.Errorf("the consumer writer is missing from the extracted source: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Kbuild")); err != nil {
		t.Error(err)
	}
}
