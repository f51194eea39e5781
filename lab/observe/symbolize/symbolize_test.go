package symbolize

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/oops-armv7-local.log is a real oops of userblk's local mode on armv7-lpae
// (6.1.0-50-armmp-lpae); testdata/userblk-armv7.ko is the module that ran, reduced to
// its symbols and DWARF (objcopy --only-keep-debug).
func TestARMOopsFromRecordedKO(t *testing.T) {
	oops, err := os.ReadFile("testdata/oops-armv7-local.log")
	if err != nil {
		t.Fatal(err)
	}
	frames, err := Report(string(oops), repoModule("userblk", "testdata/userblk-armv7.ko", "kmod"))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 1 {
		t.Fatalf("want the one userblk frame (LR and call trace are the same), got %+v", frames)
	}
	f := frames[0]
	// addr2line -i on userblk_ioctl+0x5db: uaccess.h:524 <- uaccess.h:105 <- userblk.c:824
	// (userblk_copy_out) <- userblk.c:939 (userblk_get_request) <- userblk.c:1061.
	if got, want := f.String(), "userblk_ioctl+0x5dc/0xd8c [userblk] (kmod/userblk.c:824)"; got != want {
		t.Errorf("frame = %q, want %q", got, want)
	}
	if strings.Join(f.Inline, " | ") != "userblk_get_request (kmod/userblk.c:939) | userblk_ioctl (kmod/userblk.c:1061)" {
		t.Errorf("inline chain = %q", f.Inline)
	}
	ann := Annotate(string(oops), frames)
	if !strings.Contains(ann, "LR is at userblk_ioctl+0x5dc/0xd8c [userblk] (kmod/userblk.c:824)") {
		t.Errorf("annotated report lacks the source line:\n%s", ann)
	}
	if strings.Contains(ann, "sys_ioctl+0x118/0xad0 (") {
		t.Error("frames outside the job's modules must stay as they are")
	}
}

func TestBareAddressFrameNeedsTextAddr(t *testing.T) {
	line := "[<bf1957a4>] (userblk_ioctl [userblk]) from [<c0703338>] (sys_ioctl+0x118/0xad0)"
	mods := repoModule("userblk", "testdata/userblk-armv7.ko", "kmod")
	// userblk_ioctl is at .text+0x11c8 in this build: a .text loaded at 0xbf1957a4-0x11c8-0x5dc.
	mods[0].TextAddr = 0xbf1957a4 - 0x11c8 - 0x5dc
	frames, err := Report(line, mods)
	if err != nil || len(frames) != 1 || frames[0].String() != "userblk_ioctl+0x5dc/0xd8c [userblk] (kmod/userblk.c:824)" {
		t.Fatalf("frames = %+v, %v", frames, err)
	}
	mods[0].TextAddr = 0
	if frames, _ := Report(line, mods); len(frames) != 0 {
		t.Errorf("without the load address a bare address cannot be placed: %+v", frames)
	}
}

func TestOtherModulesAndMissingDWARF(t *testing.T) {
	mods := []Module{{Name: "userblk", KO: "testdata/userblk-armv7.ko"}}
	frames, err := Report("PC is at loop_queue_rq+0x10/0x200 [loop]", mods)
	if err != nil || len(frames) != 0 {
		t.Fatalf("a frame of another module: %+v %v", frames, err)
	}
	// An object without DWARF: the host's own /bin/true stands in for a -g-less .ko.
	if _, err := os.Stat("/bin/true"); err == nil {
		mods[0].KO = "/bin/true"
		_, err := Report("LR is at userblk_ioctl+0x5dc/0xd8c [userblk]", mods)
		if err == nil || !strings.Contains(err.Error(), "no DWARF") {
			t.Errorf("want a no-DWARF error, got %v", err)
		}
	}
}

// The x86 targets' modules: the same module (examples/byom/sumdev) built for i386
// (REL relocations) and x86_64 (RELA), a faulting-PC frame each.
func TestX86Objects(t *testing.T) {
	for _, c := range []struct{ ko, report, want string }{
		{"testdata/sumdev-amd64.ko", "RIP: 0010:sumdev_write+0x40/0x11d [sumdev]", "sumdev_write+0x40/0x11d [sumdev] (examples/byom/sumdev/sumdev.c:41)"},
		{"testdata/sumdev-i386.ko", "EIP: sumdev_write+0x40/0x13b [sumdev]", "sumdev_write+0x40/0x13b [sumdev] (examples/byom/sumdev/sumdev.c:46)"},
	} {
		frames, err := Report(c.report, repoModule("sumdev", c.ko, "examples/byom/sumdev"))
		if err != nil || len(frames) != 1 || frames[0].String() != c.want {
			t.Errorf("%s: frames = %v, %v; want %s", c.ko, frames, err, c.want)
		}
	}
}

// A frame in a part GCC moved out of line (kbugs_uaf.cold, in .text.unlikely) is
// located in its own section: at offset 0x45 of .text.unlikely, .text holds another
// function's code. KFENCE's title is the faulting PC itself (line 50, the read of the
// freed object); the call trace's next frame is a return address.
func TestColdPartFrames(t *testing.T) {
	if _, err := exec.LookPath("addr2line"); err != nil {
		t.Skip("no binutils addr2line on this host")
	}
	mods := repoModule("kbugs", "testdata/kbugs-amd64.ko", "examples/kbugs/kbugs")
	report := "BUG: KFENCE: use-after-free read in kbugs_uaf.cold+0x45/0x56 [kbugs]\n" +
		" kbugs_uaf.cold+0x45/0x56 [kbugs]\n kbugs_uaf.cold+0x17/0x56 [kbugs]\n"
	frames, err := Report(report, mods)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range frames {
		got = append(got, fmt.Sprintf("%s:%d", f.File, f.Line))
	}
	want := []string{"examples/kbugs/kbugs/kbugs.c:50", "examples/kbugs/kbugs/kbugs.c:48"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("frames = %v, want %v", got, want)
	}
}

func TestParseAddr2line(t *testing.T) {
	out := "kfence_free\n/usr/src/include/linux/kfence.h:58\nkbugs_uaf\n/tmp/b/kbugs.c:49 (discriminator 2)\n??\n??:0\n"
	got := parseAddr2line(out)
	want := []loc{{fn: "kfence_free", file: "/usr/src/include/linux/kfence.h", line: 58}, {fn: "kbugs_uaf", file: "/tmp/b/kbugs.c", line: 49}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parse = %v, want %v", got, want)
	}
}

// lockdep lists the locks a task holds, each with where it was taken; those come after
// the call trace, whose first module frame names the finding.
func TestHeldLocksAfterCallTrace(t *testing.T) {
	mods := repoModule("kbugs", "testdata/kbugs-amd64.ko", "examples/kbugs/kbugs")
	report := "BUG: scheduling while atomic: sh/180/0x00000002\n" +
		" #4: ffffffffc0210328 (plant_mutex){+.+.}-{3:3}, at: plant_set+0x1b/0xa0 [kbugs]\n" +
		"Call Trace:\n kbugs_uaf+0x5a/0x92 [kbugs]\n plant_set+0x1b/0xa0 [kbugs]\n"
	frames, err := Report(report, mods)
	if err != nil || len(frames) == 0 {
		t.Fatalf("frames %v, %v", frames, err)
	}
	if frames[0].Func != "kbugs_uaf" {
		t.Errorf("first frame %s, want the call trace's kbugs_uaf before the held lock's plant_set", frames[0].Text)
	}
}

// userblk built against x86_64@trixie+debug (DWARF 5, a 9 KiB function with many
// inlined calls): debug/dwarf finds no row for the frame, binutils does, so the frame
// still gets its line (the wait in req_wait_done, inlined into userblk_submit_bio).
func TestLargeFunctionFallsBackToAddr2line(t *testing.T) {
	if _, err := exec.LookPath("addr2line"); err != nil {
		t.Skip("no binutils addr2line on this host")
	}
	mods := repoModule("userblk", "testdata/userblk-amd64-debug.ko", "kmod")
	frames, err := Report(" userblk_submit_bio+0x122e/0x2380 [userblk]\n", mods)
	if err != nil || len(frames) != 1 {
		t.Fatalf("frames %v, %v", frames, err)
	}
	if f := frames[0]; f.File != "kmod/userblk.c" || f.Line == 0 {
		t.Errorf("frame %s at %s:%d, want a line of kmod/userblk.c", f.Text, f.File, f.Line)
	}
}

// repoModule is the one-module list Report takes for the object ko of the module name
// built from srcDir, a directory of this repository.
func repoModule(name, ko, srcDir string) []Module {
	root, _ := filepath.Abs("../../..")
	return []Module{{Name: name, KO: ko, SrcDir: srcDir, Root: root}}
}
