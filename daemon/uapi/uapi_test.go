package uapi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// TestMatchesCHeader compiles static assertions generated from the Go mirror against
// kmod/uapi/userblk.h, for every compiler that is installed: a size, offset or ioctl
// number that drifts on any of the guest ABIs (x86_64, i386, armhf, arm64) fails the build of the check.
func TestMatchesCHeader(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the generated checks assume Go's amd64 layout equals the padding-free C one")
	}
	hdr, err := filepath.Abs("../../kmod/uapi")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("#include <stddef.h>\n#include <linux/types.h>\n#include \"userblk.h\"\n")
	assert := func(expr string, want uintptr) {
		fmt.Fprintf(&b, "_Static_assert((%s) == %d, \"%s\");\n", expr, want, strings.ReplaceAll(expr, "\"", ""))
	}
	for cname, v := range map[string]any{"userblk_create": Create{}, "userblk_request": Request{}, "userblk_complete": Complete{}} {
		rt := reflect.TypeOf(v)
		assert(fmt.Sprintf("sizeof(struct %s)", cname), rt.Size())
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			assert(fmt.Sprintf("offsetof(struct %s, %s)", cname, cField(f.Name)), f.Offset)
		}
	}
	assert("USERBLK_IOC_CREATE", IocCreate)
	assert("USERBLK_IOC_GET_REQUEST", IocGetRequest)
	assert("USERBLK_IOC_COMPLETE", IocComplete)
	assert("USERBLK_IOC_SHUTDOWN", IocShutdown)
	assert("USERBLK_MAP_ATOMIC", MapAtomic)
	assert("USERBLK_MAP_LOCAL", MapLocal)
	assert("USERBLK_MAP_KMAP", MapKmap)
	assert("USERBLK_MAP_COPIER", MapCopier)
	for name, v := range numericConstants {
		assert(name, v)
	}
	// A freestanding stand-in for <linux/types.h> and <linux/ioctl.h>, so the check needs
	// no libc or kernel headers for the target: each compiler's own builtin type sizes and
	// alignments decide the layout. The ioctl macros are asm-generic's.
	tmp := t.TempDir()
	stub := map[string]string{
		"linux/types.h": "typedef __UINT64_TYPE__ __u64; typedef __INT64_TYPE__ __s64;\n" +
			"typedef __UINT32_TYPE__ __u32; typedef __INT32_TYPE__ __s32;\n",
		"linux/ioctl.h": "#define _IOC(d,t,n,s) (((d)<<30)|((s)<<16)|((t)<<8)|(n))\n" +
			"#define _IO(t,n) _IOC(0U,(t),(n),0)\n#define _IOW(t,n,T) _IOC(1U,(t),(n),sizeof(T))\n" +
			"#define _IOR(t,n,T) _IOC(2U,(t),(n),sizeof(T))\n#define _IOWR(t,n,T) _IOC(3U,(t),(n),sizeof(T))\n",
	}
	for name, text := range stub {
		os.MkdirAll(filepath.Join(tmp, "linux"), 0o755)
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(tmp, "check.c")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	compilers := [][]string{{"gcc"}, {"gcc", "-m32"}, {"arm-linux-gnueabihf-gcc"}, {"aarch64-linux-gnu-gcc"}}
	ran := 0
	for _, cc := range compilers {
		if _, err := exec.LookPath(cc[0]); err != nil {
			t.Logf("%s not installed: skipped", cc[0])
			continue
		}
		args := append(cc[1:], "-fsyntax-only", "-nostdinc", "-isystem", gccInclude(cc), "-I", tmp, "-I", hdr, src)
		out, err := exec.Command(cc[0], args...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: the Go mirror disagrees with userblk.h:\n%s", cc, out)
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no C compiler could check the ABI")
	}
}

func cField(goName string) string {
	switch goName {
	case "MapMode":
		return "map_mode"
	case "BufLen":
		return "buf_len"
	case "IOTimeout":
		return "io_timeout"
	case "DevID":
		return "dev_id"
	}
	return strings.ToLower(goName)
}

// gccInclude is the compiler's own header dir (stddef.h for offsetof).
func gccInclude(cc []string) string {
	out, err := exec.Command(cc[0], append(cc[1:], "-print-file-name=include")...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func TestIoctlNumbers(t *testing.T) {
	// Known values, computed by hand from _IOWR('\xb7', 2, 40) etc.
	if IocGetRequest != 0xc028b702 {
		t.Errorf("GET_REQUEST = %#x", IocGetRequest)
	}
	if IocCreate != 0xc018b701 {
		t.Errorf("CREATE = %#x", IocCreate)
	}
	if IocComplete != 0x4018b703 {
		t.Errorf("COMPLETE = %#x", IocComplete)
	}
	if unsafe.Sizeof(Request{}) != 40 || unsafe.Sizeof(Create{}) != 24 || unsafe.Sizeof(Complete{}) != 24 {
		t.Error("struct sizes changed")
	}
}

// numericConstants is every numeric #define of userblk.h with its Go mirror's value;
// TestEveryConstantMirrored makes sure none is missing.
var numericConstants = map[string]uintptr{
	"USERBLK_MAX_SEGMENT":       MaxSegment,
	"USERBLK_MAX_SIZE":          MaxSize,
	"USERBLK_MAX_IO_TIMEOUT":    MaxIOTimeout,
	"USERBLK_MAP_DEFAULT":       MapDefault,
	"USERBLK_MAP_ATOMIC":        MapAtomic,
	"USERBLK_MAP_LOCAL":         MapLocal,
	"USERBLK_MAP_KMAP":          MapKmap,
	"USERBLK_MAP_COPIER":        MapCopier,
	"USERBLK_MAP_ATOMIC_SLEEP":  MapAtomicSleep,
	"USERBLK_OP_READ":           OpRead,
	"USERBLK_OP_WRITE":          OpWrite,
	"USERBLK_GET_NOWAIT":        GetNowait,
	"USERBLK_IOC_MAGIC":         Magic,
	"USERBLK_IOC_CREATE":        IocCreate,
	"USERBLK_IOC_GET_REQUEST":   IocGetRequest,
	"USERBLK_IOC_COMPLETE":      IocComplete,
	"USERBLK_IOC_SHUTDOWN":      IocShutdown,
	"USERBLK_EV_TIMEOUT_QUEUED": EvTimeoutQueued,
	"USERBLK_EV_TIMEOUT_SENT":   EvTimeoutSent,
	"USERBLK_EV_TIMEOUT_BUSY":   EvTimeoutBusy,
	"USERBLK_EV_COMPLETE_BUSY":  EvCompleteBusy,
	"USERBLK_EV_CLOSE_BUSY":     EvCloseBusy,
	"USERBLK_EV_DEAD_BUSY":      EvDeadBusy,
	"USERBLK_EV_MULTISEG_BIO":   EvMultisegBio,
	"USERBLK_EV_MIDBIO_ERROR":   EvMidbioError,
	"USERBLK_EV_COUNT":          EvCount,
}

// TestEveryConstantMirrored fails when userblk.h gains a #define the Go side does not
// mirror (numeric ones are compared by TestMatchesCHeader, strings by
// TestStringsMatchCHeader).
func TestEveryConstantMirrored(t *testing.T) {
	data, err := os.ReadFile("../../kmod/uapi/userblk.h")
	if err != nil {
		t.Fatal(err)
	}
	strs := map[string]bool{"USERBLK_CTL_NAME": true, "USERBLK_MODE_NAMES": true, "USERBLK_EVENTS_DIR": true, "USERBLK_EVENT_NAMES": true}
	seen := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "#define" || !strings.HasPrefix(f[1], "USERBLK_") {
			continue
		}
		seen++
		if _, ok := numericConstants[f[1]]; !ok && !strs[f[1]] {
			t.Errorf("%s is defined in userblk.h but not mirrored in daemon/uapi (add it and to numericConstants)", f[1])
		}
	}
	if seen < len(numericConstants)+len(strs) {
		t.Errorf("found %d USERBLK_ defines, want at least %d: is the header parsed right?", seen, len(numericConstants)+len(strs))
	}
}

// TestStringsMatchCHeader compiles and runs a host program that prints the header's
// string constants (the control device's name and the mode names, in order), the way
// cgo -godefs evaluates a header, and compares them with the Go mirror.
func TestStringsMatchCHeader(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	hdr, _ := filepath.Abs("../../kmod/uapi")
	tmp := t.TempDir()
	src := filepath.Join(tmp, "names.c")
	prog := `#include <stdio.h>
#include "userblk.h"
static const char *const modes[] = USERBLK_MODE_NAMES;
static const char *const events[] = USERBLK_EVENT_NAMES;
int main(void) {
	unsigned i;
	printf("%s\n", USERBLK_CTL_NAME);
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		printf("%s\n", modes[i]);
	printf("%s\n", USERBLK_EVENTS_DIR);
	for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		printf("%s\n", events[i]);
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "names")
	if out, err := exec.Command("gcc", "-I", hdr, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	want := append(append(append([]string{CtlName}, ModeList[:]...), EventsDir), EventNames[:]...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("userblk.h says %q, the Go mirror %q", got, want)
	}
	for name, n := range ModeNames {
		if ModeList[n] != name {
			t.Errorf("ModeNames[%q] = %d, but ModeList[%d] = %q", name, n, n, ModeList[n])
		}
	}
}
