package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The arm64 recipe: the Pi 4's core in 64-bit mode under qemu-system-aarch64, no
// HIGHMEM, cross-built with aarch64-linux-gnu-, on the three kernel lines.
func TestArm64Recipe(t *testing.T) {
	a := lookup(t, "arm64")
	q := a.QEMU
	if q.Binary != "qemu-system-aarch64" || q.Package != "qemu-system-arm" || !strings.HasPrefix(q.Machine, "virt") ||
		q.CPU != "cortex-a72" || q.SMP != 4 || q.Console != "ttyAMA0" || q.NetDevice != "virtio-net-device" || q.KVM ||
		q.KernelFormat != "arm64-image" {
		t.Errorf("qemu: %+v", q)
	}
	if a.DebArch != "arm64" || a.Multiarch != "aarch64-linux-gnu" || a.GOARCH != "arm64" || a.GOARM != "" {
		t.Errorf("arch: deb %s multiarch %s go %s/%s", a.DebArch, a.Multiarch, a.GOARCH, a.GOARM)
	}
	if m := a.ModuleBuild; m.Arch != "arm64" || m.CrossCompile != "aarch64-linux-gnu-" || m.CrossPackage != "gcc-aarch64-linux-gnu" {
		t.Errorf("module build: %+v", m)
	}
	if a.Expect.UnameM != "aarch64" || a.Expect.HighTotalMinKB != 0 {
		t.Errorf("expect: %+v (a 64-bit kernel has no HIGHMEM)", a.Expect)
	}
	if got := a.ImagePackages()[0]; got != "linux-image-6.1.0-50-arm64:arm64=6.1.176-1" {
		t.Errorf("kernel package %s", got)
	}
	if got := a.LibDirs(); got[0] != "/lib/aarch64-linux-gnu" || got[1] != "/usr/lib/aarch64-linux-gnu" {
		t.Errorf("library dirs %v", got)
	}
	if got := strings.Join(a.LineNames(), ","); got != "bookworm,sid,trixie" {
		t.Fatalf("lines %s", got)
	}
	tx, _ := Lookup("arm64@trixie")
	if tx.Suite != "trixie" || !strings.HasSuffix(tx.Kernel.Release, "+deb13-arm64") || tx.Kernel.Headers[0] != "linux-headers-"+tx.Kernel.Release {
		t.Errorf("trixie: %+v", tx.Kernel)
	}
	sid, _ := Lookup("arm64@sid")
	if sid.Kernel.Resolve != "arm64" || slices.Contains(sid.Modules, "crc32c_generic") {
		t.Errorf("sid: %+v modules %v", sid.Kernel, sid.Modules)
	}
}

// The apt roots fetch the lists of the host's and every recipe's architecture: a new
// target's deb_arch needs no other list changed.
func TestDebArchsFromRecipes(t *testing.T) {
	archs, err := DebArchs()
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := Targets()
	for _, tg := range ts {
		if !slices.Contains(archs, tg.DebArch) {
			t.Errorf("%s's %s missing from %v", tg.Name, tg.DebArch, archs)
		}
	}
	if !slices.Contains(archs, hostDebArch()) || !slices.IsSorted(archs) || len(slices.Compact(slices.Clone(archs))) != len(archs) {
		t.Errorf("archs %v: want the host's %s, sorted, each once", archs, hostDebArch())
	}
}

// What used to be per-architecture tables elsewhere is the recipe's, checked when it is
// read: each error names the file and the field.
func TestRecipeArchChecks(t *testing.T) {
	good, _ := recipeFS.ReadFile("recipes/arm64.yaml")
	if _, err := ParseTarget("a.yaml", good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ old, new, field string }{
		{"multiarch: aarch64-linux-gnu\n", "", "a.yaml: multiarch: missing"},
		{"multiarch: aarch64-linux-gnu", "multiarch: /lib/aarch64", "a.yaml: multiarch"},
		{"deb_arch: arm64", "deb_arch: ARM 64", "a.yaml: deb_arch"},
		{"cross_compile: aarch64-linux-gnu-", "cross_compile: arm-linux-gnueabihf-", "a.yaml: module_build.cross_compile: a cross compiler for aarch64-linux-gnu is aarch64-linux-gnu-"},
		{"cross_package: gcc-aarch64-linux-gnu", "cross_package: \"\"", "a.yaml: module_build.cross_package"},
		{"package: qemu-system-arm", "package: \"\"", "a.yaml: qemu.package"},
		{"kernel_format: arm64-image", "kernel_format: uimage", `a.yaml: qemu.kernel_format "uimage"`},
		{"  kernel_format: arm64-image\n", "", `a.yaml: qemu.kernel_format ""`},
	} {
		bad := strings.Replace(string(good), c.old, c.new, 1)
		if bad == string(good) {
			t.Fatalf("%q is not in the recipe", c.old)
		}
		if _, err := ParseTarget("a.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s -> %s: %v, want %q", c.old, c.new, err, c.field)
		}
	}
}

// A built or own kernel is made with the boot image its recipe's kernel format boots.
func TestBootImageName(t *testing.T) {
	for name, want := range map[string]string{"arm64": "Image", "arm64@sid": "Image", "armv7-lpae": "zImage", "i386-pae": "bzImage", "x86_64": "bzImage"} {
		tg := lookup(t, name)
		if got := bootImageName(tg); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}

// An arm64-image is Debian's vmlinuz as it is, after its header's magic says it is an
// uncompressed Image.
func TestCheckArm64Image(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 4096)
	copy(img, "MZ")
	copy(img[56:], "ARM\x64")
	src, dst := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "Image")
	os.WriteFile(src, img, 0o644)
	if err := CheckArm64Image(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); len(got) != len(img) {
		t.Errorf("copied %d bytes, want %d", len(got), len(img))
	}
	for name, data := range map[string][]byte{"gzip": {0x1f, 0x8b, 8, 0, 0, 0}, "zimage": make([]byte, 4096)} {
		os.WriteFile(src, data, 0o644)
		if err := CheckArm64Image(context.Background(), src, dst); err == nil || !strings.Contains(err.Error(), "not an uncompressed arm64 Image") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// scripts/setup-host.sh installs every recipe's QEMU and cross compiler, read from the
// recipes themselves.
func TestSetupHostInstallsRecipePackages(t *testing.T) {
	out, err := exec.Command("bash", "../scripts/setup-host.sh", "--list").Output()
	if err != nil {
		t.Fatalf("setup-host.sh --list: %v", err)
	}
	listed := strings.Fields(string(out))
	ts, _ := Targets()
	for _, tg := range ts {
		for _, p := range []string{tg.QEMU.Package, tg.ModuleBuild.CrossPackage} {
			if !slices.Contains(listed, p) {
				t.Errorf("%s needs %s, which setup-host.sh does not install (it lists %v)", tg.Name, p, listed)
			}
		}
	}
}

// lookup is Lookup for a test: the target ref names, or the test fails.
func lookup(t *testing.T, ref string) *Target {
	t.Helper()
	tg, err := Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
