package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestTargetAtLine(t *testing.T) {
	def := lookup(t, "armv7-lpae")
	tr := lookup(t, "armv7-lpae@trixie")
	if tr.Name != "armv7-lpae@trixie" || tr.Base != "armv7-lpae" || tr.Suite != "trixie" || !strings.HasPrefix(tr.Kernel.Release, "6.12.") {
		t.Errorf("trixie line: %s %s %s %s", tr.Name, tr.Base, tr.Suite, tr.Kernel.Release)
	}
	if tr.QEMU.MemoryMB != def.QEMU.MemoryMB || tr.QEMU.Append != def.QEMU.Append {
		t.Error("a line keeps the target's QEMU settings")
	}
	if tr.Hash() == def.Hash() {
		t.Error("each line has its own image cache key")
	}
	if same, _ := Lookup("armv7-lpae@bookworm"); same.Name != "armv7-lpae" || same.Kernel.Release != def.Kernel.Release {
		t.Errorf("@bookworm is the default line: %s", same.Name)
	}
	sid, err := Lookup("x86_64@sid")
	if err != nil || sid.Kernel.Resolve != "amd64" || sid.Kernel.Release != "" {
		t.Fatalf("sid is resolved at build time: %+v %v", sid.Kernel, err)
	}
	_, err = Lookup("i386-pae@trixie")
	if err == nil || !strings.Contains(err.Error(), `no kernel line "trixie"`) || !strings.Contains(err.Error(), "lines: bookworm") ||
		!strings.Contains(err.Error(), "no i386 kernel") && !strings.Contains(err.Error(), "ship none") {
		t.Errorf("i386-pae@trixie: %v", err)
	}
	for _, bad := range []string{"x86_64@", "@trixie", "x86_64@Trixie!"} {
		if _, err := Lookup(bad); err == nil || !strings.Contains(err.Error(), "TARGET@LINE") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := Lookup("riscv@trixie"); err == nil || !strings.Contains(err.Error(), `unknown target "riscv"`) {
		t.Errorf("unknown target with a line: %v", err)
	}
}

func TestResolveFromMetapackage(t *testing.T) {
	k, err := kernelFromDepends("armmp-lpae", "linux-base-armmp-lpae (= 7.2.13-1), linux-image-7.2.13+deb14-armmp-lpae (= 7.2.13-1)")
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "7.2.13+deb14-armmp-lpae" || k.Version != "7.2.13-1" || k.Kbuild != "linux-kbuild-7.2.13+deb14" ||
		strings.Join(k.Headers, " ") != "linux-headers-7.2.13+deb14-armmp-lpae linux-headers-7.2.13+deb14-common:all" {
		t.Errorf("%+v", k)
	}
	parts := kernelParts(k, "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-armmp-lpae (= 7.2.13-1), "+
		"linux-binary-7.2.13+deb14-armmp-lpae (= 7.2.13-1), linux-modules-7.2.13+deb14-armmp-lpae (= 7.2.13-1)")
	if strings.Join(parts, " ") != "linux-base-7.2.13+deb14-armmp-lpae linux-binary-7.2.13+deb14-armmp-lpae linux-modules-7.2.13+deb14-armmp-lpae" {
		t.Errorf("parts %v", parts)
	}
	if _, err := kernelFromDepends("amd64", "linux-base (>= 4)"); err == nil {
		t.Error("a metapackage without a versioned image must be an error")
	}
}

// fakeModule builds a relocatable object with a .modinfo section, as kbuild does.
func fakeModule(t *testing.T, file, depends string) {
	t.Helper()
	dir := t.TempDir()
	obj := filepath.Join(dir, "m.o")
	cc := exec.Command("gcc", "-c", "-x", "c", "-o", obj, "-")
	cc.Stdin = strings.NewReader("int x;\n")
	if out, err := cc.CombinedOutput(); err != nil {
		t.Skipf("no host gcc: %v %s", err, out)
	}
	info := filepath.Join(dir, "modinfo")
	os.WriteFile(info, []byte("depends="+depends+"\x00license=GPL\x00"), 0o644)
	os.MkdirAll(filepath.Dir(file), 0o755)
	if out, err := exec.Command("objcopy", "--add-section", ".modinfo="+info, obj, file).CombinedOutput(); err != nil {
		t.Skipf("objcopy: %v %s", err, out)
	}
}

func TestOverlayModulesDep(t *testing.T) {
	tree := t.TempDir()
	fakeModule(t, filepath.Join(tree, "kernel/drivers/block/zram/zram.ko"), "zsmalloc")
	fakeModule(t, filepath.Join(tree, "kernel/mm/zsmalloc.ko"), "")
	fakeModule(t, filepath.Join(tree, "kernel/fs/ext4/ext4.ko"), "mbcache,jbd2")
	fakeModule(t, filepath.Join(tree, "kernel/fs/mbcache.ko"), "")
	fakeModule(t, filepath.Join(tree, "kernel/fs/jbd2/jbd2.ko"), "crc16")
	fakeModule(t, filepath.Join(tree, "kernel/lib/crc16.ko"), "")
	// A compressed module, as trixie ships them.
	fakeModule(t, filepath.Join(tree, "kernel/drivers/block/loop.ko"), "")
	if out, err := exec.Command("xz", filepath.Join(tree, "kernel/drivers/block/loop.ko")).CombinedOutput(); err != nil {
		t.Skipf("xz: %v %s", err, out)
	}
	os.WriteFile(filepath.Join(tree, "modules.builtin"), []byte("kernel/drivers/virtio/virtio_pci.ko\n"), 0o644)

	base, err := ResolveModules(tree, []string{"ext4", "virtio_pci"}) // built in: skipped
	if err != nil {
		t.Fatal(err)
	}
	all, err := ResolveModules(tree, []string{"ext4", "virtio_pci", "zram", "loop"})
	if err != nil {
		t.Fatal(err)
	}
	r := &initramfs{}
	added, err := r.addModules(tree, "9.9.9-test", all, base)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(added, " ") != "zsmalloc.ko zram.ko loop.ko" {
		t.Errorf("added %v: the base image's modules are not repeated", added)
	}
	dep := string(r.entries["/usr/lib/modules/9.9.9-test/modules.dep"].data)
	for _, want := range []string{
		"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko kernel/fs/mbcache.ko\n",
		"kernel/drivers/block/zram/zram.ko: kernel/mm/zsmalloc.ko\n",
		"kernel/drivers/block/loop.ko:\n",
	} {
		if !strings.Contains(dep, want) {
			t.Errorf("modules.dep lacks %q:\n%s", want, dep)
		}
	}
	loop := r.entries["/usr/lib/modules/9.9.9-test/kernel/drivers/block/loop.ko"].data
	if len(loop) < 4 || string(loop[1:4]) != "ELF" {
		t.Error("a compressed module must be stored decompressed (busybox insmod wants ELF)")
	}
	if _, err := ResolveModules(tree, []string{"nosuch"}); err == nil {
		t.Error("a missing module must be an error")
	}
}

func TestOverlayPackagesClosureAndData(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("host layout assumed amd64")
	}
	own := t.TempDir()
	os.MkdirAll(filepath.Join(own, "usr/sbin"), 0o755)
	os.MkdirAll(filepath.Join(own, "usr/share/tool"), 0o755)
	os.MkdirAll(filepath.Join(own, "usr/share/doc/tool"), 0o755)
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip(err)
	}
	// The package's own files, as unpacked; the stage with its dependencies is the host.
	os.WriteFile(filepath.Join(own, "usr/sbin/tool"), data, 0o755)
	os.WriteFile(filepath.Join(own, "usr/share/tool/tool.conf"), []byte("x=1\n"), 0o644)
	os.WriteFile(filepath.Join(own, "usr/share/doc/tool/README"), []byte("docs\n"), 0o644)
	os.Symlink("tool", filepath.Join(own, "usr/sbin/tool-alias"))
	r := &initramfs{}
	tg, _ := Lookup("x86_64")
	r.stage = t.TempDir()
	copyTree(t, own, r.stage)
	for _, lib := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"} {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			t.Skip(err)
		}
		b, _ := os.ReadFile(real)
		os.MkdirAll(filepath.Join(r.stage, filepath.Dir(lib)), 0o755)
		os.WriteFile(filepath.Join(r.stage, lib), b, 0o755)
	}
	if err := r.addPackages(tg, own); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/usr/sbin/tool", "/usr/share/tool/tool.conf", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/ld-linux-x86-64.so.2"} {
		if _, ok := r.entries[want]; !ok {
			t.Errorf("overlay lacks %s", want)
		}
	}
	if e := r.entries["/usr/sbin/tool-alias"]; e.link != "tool" {
		t.Errorf("symlink not kept: %+v", e)
	}
	if _, ok := r.entries["/usr/share/doc/tool/README"]; ok {
		t.Error("documentation must be left out")
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

func TestBoardCheckCommand(t *testing.T) {
	cmd := CheckAdditionsCommand(Additions{Packages: []string{"e2fsprogs"}, Modules: []string{"zram"}})
	for _, want := range []string{"dpkg-query", "e2fsprogs", "modinfo zram", "/sys/module/zram", "kmodlab-check-done"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("check command lacks %q: %s", want, cmd)
		}
	}
	missing, err := ParseMissing("missing package fio\nmissing module zram\nkmodlab-check-done\n")
	if err != nil || strings.Join(missing, ",") != "package fio,module zram" {
		t.Errorf("missing %v %v", missing, err)
	}
	if _, err := ParseMissing("sh: dpkg-query: not found\n"); err == nil {
		t.Error("a check that did not finish must be an error")
	}
	if f, p := (Additions{Packages: []string{"Bad Name"}}).CheckNames(); f != "packages" || p == "" {
		t.Errorf("bad package name: %s %s", f, p)
	}
}
