package canary

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStates(t *testing.T) {
	for _, tc := range []struct {
		name, log, state, reason string
		user, kthread            int
	}{
		{"6.1: both writers see it",
			"kmodlab-canary: local=1874 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=1871 user_kmap=0 ttbr0_pan=0",
			Positive, "", 1871, 1874},
		{"6.12 under TCG: the kernel thread only",
			"kmodlab-canary: local=1866 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=0 user_kmap=0 ttbr0_pan=1",
			Negative, KthreadOnly + " under TCG (CPU_TTBR0_PAN)", 0, 1866},
		{"kernel thread only, no PAN",
			"kmodlab-canary: local=5 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=0 user_kmap=0 ttbr0_pan=0",
			Negative, KthreadOnly, 0, 5},
		{"nothing stale",
			"kmodlab-canary: local=0 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=0 user_kmap=0 ttbr0_pan=0",
			Negative, "no stale mapping seen by any writer", 0, 0},
		{"a single stale handover to the consumer is enough",
			"kmodlab-canary: local=0 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=1 user_kmap=0 ttbr0_pan=1",
			Positive, "", 1, 0},
		{"x86_64",
			"kmodlab-canary: local=0 kmap=0 of 0 highmem=0 cpus=0,3 user_local=0 user_kmap=0 ttbr0_pan=0",
			NoHighmem, "", 0, 0},
		{"one CPU",
			"kmodlab-canary: local=0 kmap=0 of 0 highmem=16 cpus=0,0 user_local=0 user_kmap=0 ttbr0_pan=0",
			Negative, "one CPU online: no handover to another CPU to measure", 0, 0},
		{"the last line counts",
			"[ 1.0] kmodlab-canary: local=9 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=9 user_kmap=0 ttbr0_pan=0\n" +
				"[ 2.0] kmodlab-canary: local=7 kmap=0 of 2000 highmem=16 cpus=0,3 user_local=0 user_kmap=0 ttbr0_pan=1\n",
			Negative, KthreadOnly + " under TCG (CPU_TTBR0_PAN)", 0, 7},
	} {
		r, err := Parse(tc.log)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.State != tc.state || r.Reason != tc.reason || r.UserLocal != tc.user || r.Local != tc.kthread {
			t.Errorf("%s: got %+v, want state %s reason %q user %d kthread %d", tc.name, r, tc.state, tc.reason, tc.user, tc.kthread)
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
