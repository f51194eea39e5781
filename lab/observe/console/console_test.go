package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorded are kernel logs of real guests running userblk in the bug modes, with the
// report each must yield first: the start of its title, its kind, the faulting address,
// the frames in modules, and whether it is a hang.
var recorded = []struct {
	file, title, kind string
	fault             uint64
	modFrames         []string
	hang              bool
}{
	{"arm-oops.log", "BUG: unable to handle kernel paging request in crc32_body", "oops",
		0xffeee000, []string{"userblk_trace+0x34/0xb0 [userblk]", "userblk_ioctl+0xdb8/0xdc4 [userblk]"}, false},
	{"i386-oops.log", "BUG: unable to handle page fault in memset", "oops",
		0xfffbb000, []string{"userblk_ioctl+0x643/0xa93 [userblk]"}, false},
	{"arm-softlockup.log", "BUG: soft lockup", "lockup", 0, nil, true},
}

// readLog is the text of testdata/name.
func readLog(tb testing.TB, name string) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}

func TestRecordedCrashes(t *testing.T) {
	for _, tc := range recorded {
		reps := Find(readLog(t, tc.file))
		if !Fatal(reps) {
			t.Fatalf("%s: no fatal report in %d reports", tc.file, len(reps))
		}
		first := First(reps)
		if !strings.HasPrefix(first.Title, tc.title) || first.Kind != tc.kind {
			t.Errorf("%s: title %q kind %s, want %q… %s", tc.file, first.Title, first.Kind, tc.title, tc.kind)
		}
		if len(reps) != 1 && tc.kind == "oops" {
			t.Errorf("%s: one oops reported as %d reports: %+v", tc.file, len(reps), titles(reps))
		}
	}
}

func titles(r []Report) []string {
	var t []string
	for _, x := range r {
		t = append(t, x.Title)
	}
	return t
}

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		line, title string
		fatal       bool
	}{
		{"[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs", "kernel panic: VFS: Unable to mount root fs", true},
		{"[    2.0] kernel BUG at mm/highmem.c:42!", "kernel BUG in mm/highmem.c:42!", true},
		{"[    3.0] WARNING: CPU: 0 PID: 1 at block/genhd.c:452 device_add_disk+0x278/0x3fc", "WARNING in block/genhd.c:452", false},
		{"[    4.0] INFO: task khugepaged:43 blocked for more than 120 seconds.", "INFO: task hung", true},
		{"[    5.0] rcu: INFO: rcu_sched self-detected stall on CPU", "INFO: rcu detected stall", true},
		{"[    6.0] BUG: scheduling while atomic: kworker/0:1/12/0x00000002", "BUG: scheduling while atomic", true},
		{"6,1234,5678,-;Unable to handle kernel NULL pointer dereference at virtual address 00000000", "BUG: unable to handle kernel paging request", true},
	} {
		reps := Find(tc.line)
		if len(reps) != 1 {
			t.Errorf("%q: %d reports", tc.line, len(reps))
			continue
		}
		if !strings.HasPrefix(reps[0].Title, tc.title) || Fatal(reps) != tc.fatal {
			t.Errorf("%q: title %q fatal %v, want %q %v", tc.line, reps[0].Title, Fatal(reps), tc.title, tc.fatal)
		}
	}
	clean := "[    1.0] userblk: loaded, map_mode=kmap trace=1\n[    2.0] EXT4-fs (userblk0): mounted filesystem\n[ 3.0] userblk0: read2  00000001 0000000000000000 0000000000001000 00000000aaaaaaaa ffefe000 10 cpu=0 mode=kmap"
	if reps := Find(clean); len(reps) != 0 {
		t.Errorf("clean log: %+v", reps)
	}
}

func FuzzFind(f *testing.F) {
	for _, r := range recorded {
		f.Add(readLog(f, r.file))
	}
	f.Add("Kernel panic - not syncing: \nBUG: \nWARNING: CPU: 1 PID: 2 at x")
	f.Fuzz(func(t *testing.T, s string) {
		reps := Find(s)
		for _, r := range reps {
			if r.Title == "" || r.Line < 1 || r.Line > strings.Count(s, "\n")+1 {
				t.Fatalf("bad report %+v", r)
			}
		}
	})
}

func BenchmarkFind(b *testing.B) {
	text := strings.Repeat("[    1.000000] userblk0: read1  00000001 0000000000000000 0000000000001000 00000000aaaaaaaa ffefe000 10 cpu=0 mode=kmap\n", 5000) + readLog(b, "arm-oops.log")
	b.SetBytes(int64(len(text)))
	for i := 0; i < b.N; i++ {
		Find(text)
	}
}

// Reports carry what the verdict needs to attribute them: frames with their modules,
// the faulting address, and whether the report is a hang rather than a crash.
func TestFramesFaultAndHang(t *testing.T) {
	for _, tc := range recorded {
		r := First(Find(readLog(t, tc.file)))
		if r.FaultAddr != tc.fault || r.Hang() != tc.hang {
			t.Errorf("%s: fault %x hang %v, want %x %v", tc.file, r.FaultAddr, r.Hang(), tc.fault, tc.hang)
		}
		var mods []string
		for _, f := range r.Frames {
			if f.Module != "" {
				mods = append(mods, f.String())
			}
		}
		if strings.Join(mods, ",") != strings.Join(tc.modFrames, ",") {
			t.Errorf("%s: module frames %v, want %v", tc.file, mods, tc.modFrames)
		}
		if len(r.Frames) == 0 || r.Frames[0].Func == "" {
			t.Errorf("%s: no frames", tc.file)
		}
	}
	hung := Find("[  245.1] INFO: task blkstress:160 blocked for more than 120 seconds.\n[  245.2] Call Trace:\n[  245.3]  ? __schedule+0x1/0x2\n[  245.4]  io_schedule+0x12/0x40\n")
	if len(hung) != 1 || hung[0].Kind != KindHung || hung[0].Blocked != "blkstress:160" || !hung[0].Hang() {
		t.Fatalf("hung task: %+v", hung)
	}
	if len(hung[0].Frames) != 1 || hung[0].Frames[0].Func != "io_schedule" {
		t.Errorf("unreliable '?' frames must be skipped: %+v", hung[0].Frames)
	}
}

// The scanner sees the same reports line by line as Find does on the whole text.
func TestScannerMatchesFind(t *testing.T) {
	log := readLog(t, "arm-oops.log")
	var s Scanner
	for _, l := range strings.Split(log, "\n") {
		s.Line(l)
	}
	a, b := s.Reports(), Find(log)
	if len(a) != len(b) || a[0].Title != b[0].Title || a[0].Text != b[0].Text {
		t.Errorf("scanner %+v, find %+v", titles(a), titles(b))
	}
}

// The debug kernels' reports. kfence-uaf-arm.log, kfence-uaf-x86.log and
// sched-atomic.log are recorded kernel logs of examples/kbugs on the stock trixie
// kernels (booted with kfence.sample_interval=1); the *-x86.log ones are recorded on
// x86_64@trixie+debug (KASAN, lockdep, DEBUG_ATOMIC_SLEEP) and the *-armv7.log ones on
// armv7-lpae@trixie+debug (KASAN outline); the others are written in the
// kernel's own format (mm/kasan/report.c, kernel/locking/lockdep.c,
// kernel/sched/core.c, lib/list_debug.c, lib/ubsan.c) around the same planted bugs,
// until a +debug line records them.
func TestDebugReports(t *testing.T) {
	for _, tc := range []struct {
		file, title, module string
	}{
		{"kasan-uaf.log", "KASAN: slab-use-after-free in kbugs_uaf", "kbugs"},
		{"kfence-uaf-arm.log", "KFENCE: use-after-free read in kbugs_uaf", "kbugs"},
		{"kfence-uaf-x86.log", "KFENCE: use-after-free read in kbugs_uaf.cold", "kbugs"},
		{"lockdep-circular.log", "possible circular locking dependency detected in kbugs_inversion", "kbugs"},
		{"kasan-uaf-x86.log", "KASAN: slab-use-after-free in kbugs_uaf", "kbugs"},
		{"lockdep-circular-x86.log", "possible circular locking dependency detected in kbugs_inversion", "kbugs"},
		{"atomic-sleep-x86.log", "BUG: sleeping function called from invalid context in kbugs_atomic_sleep", "kbugs"},
		{"kasan-uaf-armv7.log", "KASAN: slab-use-after-free in kbugs_uaf", "kbugs"},
		{"lockdep-circular-armv7.log", "possible circular locking dependency detected in kbugs_inversion", "kbugs"},
		{"atomic-sleep-armv7.log", "BUG: sleeping function called from invalid context in kbugs_atomic_sleep", "kbugs"},
		{"atomic-sleep.log", "BUG: sleeping function called from invalid context in kbugs_atomic_sleep", "kbugs"},
		{"sched-atomic.log", "BUG: scheduling while atomic in kbugs_atomic_sleep", "kbugs"},
		{"list-add.log", "list_add corruption in userblk_queue_req", "userblk"},
		{"ubsan.log", "UBSAN: array-index-out-of-bounds in examples/kbugs/kbugs/kbugs.c:42:9", "kbugs"},
	} {
		reps := Find(readLog(t, "debug/"+tc.file))
		// A recorded log may go on after the first report (the sleep under kmap_atomic
		// also upsets RCU and the syscall exit): the first is what a cell is judged by.
		if len(reps) == 0 || (len(reps) != 1 && !strings.HasSuffix(tc.file, "-x86.log") && !strings.HasSuffix(tc.file, "-armv7.log")) {
			t.Errorf("%s: %d reports, want 1: %v", tc.file, len(reps), titles(reps))
			continue
		}
		r := *First(reps)
		if r.Title != tc.title || r.Kind != KindBug || !Fatal(reps) {
			t.Errorf("%s: title %q kind %s, want %q bug", tc.file, r.Title, r.Kind, tc.title)
		}
		inModule := false
		for _, f := range r.Frames {
			inModule = inModule || f.Module == tc.module
		}
		if !inModule {
			t.Errorf("%s: no frame in %s, so no attribution: %v", tc.file, tc.module, r.Frames)
		}
	}
}
