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
	dir := t.TempDir()
	build := filepath.Join(dir, "usr/src/linux-headers-6.12.107+deb13-arm64")
	common := filepath.Join(dir, "usr/src/linux-headers-6.12.107+deb13-common")
	os.MkdirAll(build, 0o755)
	os.MkdirAll(common, 0o755)
	os.WriteFile(filepath.Join(build, ".kernelvariables"), []byte("CC = $(CROSS_COMPILE)gcc-14\n"), 0o644)
	os.WriteFile(filepath.Join(common, "Makefile"), []byte("KBUILD_CFLAGS += -fmin-function-alignment=$(CONFIG_FUNCTION_ALIGNMENT)\n"), 0o644)
	err := fixCompiler(dir, build, "kmodlab-no-such-", "gcc-kmodlab-no-such")
	if err == nil || !strings.Contains(err.Error(), "kmodlab-no-such-gcc not found") || !strings.Contains(err.Error(), "apt-get install gcc-kmodlab-no-such") {
		t.Errorf("err = %v, want the missing compiler and its package", err)
	}
	if v, _ := os.ReadFile(filepath.Join(build, ".kernelvariables")); strings.Contains(string(v), "gcc-14") {
		t.Errorf("CC still names gcc-14: %s", v)
	}
}
