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
// number that drifts on any of the three guest ABIs fails the build of the check.
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
	assert("USERBLK_OP_WRITE", OpWrite)
	assert("USERBLK_MAX_SEGMENT", MaxSegment)
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
	compilers := [][]string{{"gcc"}, {"gcc", "-m32"}, {"arm-linux-gnueabihf-gcc"}}
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
	if IocComplete != 0x4018b703 {
		t.Errorf("COMPLETE = %#x", IocComplete)
	}
	if unsafe.Sizeof(Request{}) != 40 || unsafe.Sizeof(Create{}) != 16 || unsafe.Sizeof(Complete{}) != 24 {
		t.Error("struct sizes changed")
	}
}
