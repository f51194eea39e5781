package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Headers that name a newer gcc are adapted to the host's cross compiler; without that
// compiler the fix cannot be judged, so it is an error naming the package, not headers
// cached unfixed (arm64@trixie's -fmin-function-alignment then broke every build).
func TestFixCompilerNeedsTheCompiler(t *testing.T) {
	dir, build, _ := gcc14Headers(t)
	err := fixCompiler(dir, build, "kmodlab-no-such-", "gcc-kmodlab-no-such")
	if err == nil || !strings.Contains(err.Error(), "kmodlab-no-such-gcc not found") || !strings.Contains(err.Error(), "apt-get install gcc-kmodlab-no-such") {
		t.Errorf("err = %v, want the missing compiler and its package", err)
	}
	if v, _ := os.ReadFile(filepath.Join(build, ".kernelvariables")); strings.Contains(string(v), "gcc-14") {
		t.Errorf("CC still names gcc-14: %s", v)
	}
}

// With bookworm's gcc 12 against gcc 14 arm64 headers (trixie's 6.12, CALL_OPS), the
// module gets -falign-functions and no patchable function entries: ftrace on 6.12 BUGs on
// the misaligned patch sites gcc 12 leaves in cold functions.
func TestFixCompilerArm64CallOps(t *testing.T) {
	if gccAccepts("gcc", "-fmin-function-alignment=16") {
		t.Skip("the host's gcc has -fmin-function-alignment: nothing to adapt")
	}
	dir, build, common := gcc14Headers(t)
	os.MkdirAll(filepath.Join(common, "arch/arm64"), 0o755)
	arch := "ifeq ($(CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS),y)\n  CC_FLAGS_FTRACE := -fpatchable-function-entry=4,2\nelse\n  CC_FLAGS_FTRACE := -fpatchable-function-entry=2\nendif\n"
	os.WriteFile(filepath.Join(common, "arch/arm64/Makefile"), []byte(arch), 0o644)
	if err := fixCompiler(dir, build, "", "gcc"); err != nil {
		t.Fatal(err)
	}
	mk, _ := os.ReadFile(filepath.Join(common, "Makefile"))
	am, _ := os.ReadFile(filepath.Join(common, "arch/arm64/Makefile"))
	if !strings.Contains(string(mk), "-falign-functions=$(CONFIG_FUNCTION_ALIGNMENT)") {
		t.Errorf("Makefile:\n%s", mk)
	}
	if strings.Contains(string(am), "=4,2") || !strings.Contains(string(am), "-fpatchable-function-entry=2") {
		t.Errorf("arch/arm64/Makefile: want the CALL_OPS entries gone, the other branch kept:\n%s", am)
	}
}

// gcc14Headers lays out the arm64 headers of trixie's 6.12 as gcc 14 built them under a
// new root: the build tree's .kernelvariables names gcc-14 and the common Makefile asks
// for -fmin-function-alignment. It returns the root, the build and the common tree.
func gcc14Headers(t *testing.T) (dir, build, common string) {
	dir = t.TempDir()
	build = filepath.Join(dir, "usr/src/linux-headers-6.12.107+deb13-arm64")
	common = filepath.Join(dir, "usr/src/linux-headers-6.12.107+deb13-common")
	os.MkdirAll(build, 0o755)
	os.MkdirAll(common, 0o755)
	os.WriteFile(filepath.Join(build, ".kernelvariables"), []byte("CC = $(CROSS_COMPILE)gcc-14\n"), 0o644)
	os.WriteFile(filepath.Join(common, "Makefile"), []byte("KBUILD_CFLAGS += -fmin-function-alignment=$(CONFIG_FUNCTION_ALIGNMENT)\n"), 0o644)
	return dir, build, common
}
