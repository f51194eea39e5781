package images

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"golang.org/x/crypto/ssh"
)

func TestRecipes(t *testing.T) {
	ts, err := Targets()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(Names(), ","); got != "arm64,armv7-lpae,i386-pae,x86_64" {
		t.Fatalf("targets = %s", got)
	}
	for _, tg := range ts {
		if !strings.HasSuffix(tg.Kernel.Image, tg.Kernel.Release) {
			t.Errorf("%s: image package %s does not match release %s", tg.Name, tg.Kernel.Image, tg.Kernel.Release)
		}
		pk := tg.ImagePackages()
		if pk[0] != tg.Kernel.Image+":"+tg.DebArch+"="+tg.Kernel.Version {
			t.Errorf("%s: kernel spec %s", tg.Name, pk[0])
		}
		hp := tg.HeaderPackages("amd64")
		if hp[len(hp)-1] != "linux-kbuild-6.1:amd64="+tg.Kernel.Version {
			t.Errorf("%s: kbuild spec %s", tg.Name, hp[len(hp)-1])
		}
	}
	arm, _ := Lookup("armv7-lpae")
	if arm.QEMU.MemoryMB > 3072 || !strings.Contains(arm.QEMU.Append, "rodata=off") {
		t.Errorf("armv7-lpae must keep -m <= 3072 and rodata=off: %+v", arm.QEMU)
	}
	i386, _ := Lookup("i386-pae")
	if i386.QEMU.Binary != "qemu-system-x86_64" {
		t.Error("i386-pae must run under qemu-system-x86_64 (qemu-system-i386 crashes above 4 GiB)")
	}
	if _, err := Lookup("riscv"); err == nil || !strings.Contains(err.Error(), "arm64, armv7-lpae, i386-pae, x86_64") {
		t.Errorf("unknown target error must list the known ones: %v", err)
	}
}

func TestRecipeErrorsAndHash(t *testing.T) {
	good, _ := recipeFS.ReadFile("recipes/x86_64.yaml")
	a, err := ParseTarget("a.yaml", good)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseTarget("b.yaml", append([]byte("# changed\n"), good...))
	if a.Hash() == b.Hash() {
		t.Error("a changed recipe must change the cache key")
	}
	a2, _ := ParseTarget("a.yaml", good)
	if a.Hash() != a2.Hash() {
		t.Error("the same recipe must give the same cache key")
	}
	if _, err := ParseTarget("x.yaml", []byte("name: x\nbogus: 1\n")); err == nil || !strings.Contains(err.Error(), "x.yaml") {
		t.Errorf("unknown field: %v", err)
	}
	bad := strings.Replace(string(good), "memory_mb: 2048", "memory_mb: 0", 1)
	if _, err := ParseTarget("x.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "x.yaml: qemu.memory_mb") {
		t.Errorf("zero memory: %v", err)
	}
}

// isolcpus= is derived from qemu.smp: a recipe that sets it by hand is refused, and
// every recipe's command line has the daemon's CPU, the last, isolated.
func TestIsolcpusDerived(t *testing.T) {
	good, _ := recipeFS.ReadFile("recipes/x86_64.yaml")
	bad := strings.Replace(string(good), "console: ttyS0", "console: ttyS0\n  append: nokaslr isolcpus=1", 1)
	_, err := ParseTarget("x.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), `x.yaml: qemu.append: "isolcpus=1": isolcpus= is derived from qemu.smp (the daemon's CPU, the last: isolcpus=1); drop it`) {
		t.Errorf("hand-set isolcpus: %v", err)
	}
	for _, name := range Names() {
		tr := lookup(t, name)
		want := fmt.Sprintf("isolcpus=%d", tr.QEMU.SMP-1)
		if c := tr.QEMU.Cmdline(tr.QEMU.SMP); !strings.HasSuffix(c, want) || strings.Count(c, "isolcpus") != 1 {
			t.Errorf("%s: command line %q, want it to end in %s", name, c, want)
		}
	}
	if c := (QEMU{Append: "rodata=off"}).Cmdline(1); c != "rodata=off" {
		t.Errorf("one CPU: %q", c)
	}
}

// An arm-image recipe needs a load address the kernel can run at; the stub jumps there.
func TestArmImage(t *testing.T) {
	good, _ := recipeFS.ReadFile("recipes/armv7-lpae.yaml")
	arm, err := ParseTarget("arm.yaml", good)
	if err != nil || arm.QEMU.KernelFormat != "arm-image" || arm.QEMU.KernelAddr != 0x40208000 {
		t.Fatalf("%v %+v", err, arm.QEMU)
	}
	for _, addr := range []string{"0x40200000", "0x40108000", "0x140208000"} {
		bad := strings.Replace(string(good), "kernel_addr: 0x40208000", "kernel_addr: "+addr, 1)
		if _, err := ParseTarget("arm.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "arm.yaml: qemu.kernel_addr") {
			t.Errorf("kernel_addr %s: %v", addr, err)
		}
	}
	// ldr pc, [pc, #-4]; .word 0x40208000
	if got := ArmBootStub(0x40208000); string(got) != "\x04\xf0\x1f\xe5\x00\x80\x20\x40" {
		t.Errorf("stub = % x", got)
	}
}

// ExtractArmImage skips the XZ magic inside the decompressor's code and the bytes after
// the stream, as a real zImage has them.
func TestExtractArmImage(t *testing.T) {
	payload := bytes.Repeat([]byte("uncompressed kernel "), 1<<16) // 1.25 MiB
	cmd := exec.Command("xz", "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(payload)
	stream, err := cmd.Output()
	if err != nil {
		t.Skipf("xz: %v", err)
	}
	var z bytes.Buffer
	z.WriteString("decompressor code ")
	z.Write([]byte{0xfd, '7', 'z', 'X', 'Z', 0}) // the magic as the XZ decoder's constant
	z.WriteString(" more code ")
	z.Write(stream)
	z.WriteString("size word and appended data")
	dir := t.TempDir()
	zimage, out := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "Image")
	os.WriteFile(zimage, z.Bytes(), 0o644)
	if err := ExtractArmImage(context.Background(), zimage, out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, payload) {
		t.Errorf("extracted %d bytes, want the %d-byte payload", len(got), len(payload))
	}
	os.WriteFile(zimage, []byte("no stream here"), 0o644)
	if err := ExtractArmImage(context.Background(), zimage, out); err == nil || !strings.Contains(err.Error(), "no XZ- or zstd-compressed kernel") {
		t.Errorf("no stream: %v", err)
	}
}

// ExtractVmlinux takes the stream that decompresses into an ELF, past a false magic.
func TestExtractVmlinux(t *testing.T) {
	self, err := os.ReadFile("/proc/self/exe") // an ELF at hand: this test binary
	if err != nil {
		t.Skip(err)
	}
	cmd := exec.Command("xz", "-c", "-0")
	cmd.Stdin = bytes.NewReader(self)
	stream, err := cmd.Output()
	if err != nil {
		t.Skipf("xz: %v", err)
	}
	z := append([]byte("setup code \xfd7zXZ\x00 decoder "), stream...)
	z = append(z, "trailer"...)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bzImage"), z, 0o644)
	if err := ExtractVmlinux(context.Background(), filepath.Join(dir, "bzImage"), filepath.Join(dir, "vmlinux")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "vmlinux")); !bytes.Equal(got, self) {
		t.Errorf("extracted %d bytes, want the %d-byte ELF", len(got), len(self))
	}
}

func TestDropbearKeyRoundTrip(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	enc := DropbearEd25519(priv)
	if len(enc) != 4+11+4+64 {
		t.Fatalf("encoded length %d", len(enc))
	}
	back, err := ParseDropbearEd25519(enc)
	if err != nil || !back.Equal(priv) {
		t.Fatalf("round trip: %v", err)
	}
	enc[len(enc)-1] ^= 1
	if _, err := ParseDropbearEd25519(enc); err == nil {
		t.Error("a corrupted public half must be refused")
	}
}

func TestClientKeyIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	os.MkdirAll(dir, 0o755) // an existing, too open directory is tightened
	s1, err := ClientKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "id_ed25519"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	s2, _ := ClientKey(dir)
	if !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Error("the key must be reused")
	}
}

func TestELFClosureOnHost(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("host layout assumed amd64")
	}
	x86, _ := Lookup("x86_64")
	hostLibDirs := x86.LibDirs()
	files, err := ELFClosure("/", hostLibDirs, []string{"/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(files, " ")
	for _, want := range []string{"/bin/true", "libc.so.6", "ld-linux-x86-64.so.2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("closure %v lacks %s", files, want)
		}
	}
	if _, err := ELFClosure(t.TempDir(), hostLibDirs, []string{"/bin/true"}); err == nil {
		t.Error("a missing binary must be an error")
	}
}

func TestInitramfsArchive(t *testing.T) {
	stage := t.TempDir()
	os.MkdirAll(filepath.Join(stage, "lib"), 0o755)
	os.WriteFile(filepath.Join(stage, "lib/real.so"), []byte("lib"), 0o755)
	os.Symlink("/lib/real.so", filepath.Join(stage, "lib/link.so"))
	r := &initramfs{stage: stage, entries: map[string]entry{}}
	r.mergedUsr()
	if err := r.addFromStage("/lib/link.so"); err != nil {
		t.Fatal(err)
	}
	r.add("/etc/kmodlab/modules", 0o644, []byte("/lib/modules/x.ko\n"))
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(hk)
	r.add("/root/.ssh/authorized_keys", 0o600, ssh.MarshalAuthorizedKey(signer.PublicKey()))
	r.entries["/root"] = entry{mode: cpio.TypeDir | 0o700}
	out := filepath.Join(t.TempDir(), "i.cpio")
	if err := r.write(out); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(out)
	defer f.Close()
	cr := cpio.NewReader(f)
	got := map[string]*cpio.Header{}
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if h := got["lib"]; h == nil || h.Linkname != "usr/lib" {
		t.Errorf("merged /usr: /lib must link to usr/lib: %+v", h)
	}
	if h := got["usr/lib/link.so"]; h == nil || h.Mode&cpio.ModeType != cpio.TypeSymlink || h.Linkname != "/lib/real.so" {
		t.Errorf("symlink: %+v", h)
	}
	if h := got["usr/lib/real.so"]; h == nil || !h.Mode.IsRegular() {
		t.Errorf("link target not included: %+v", h)
	}
	if h := got["root"]; h == nil || h.Mode.Perm() != 0o700 {
		t.Errorf("/root must be 0700 for dropbear: %+v", h)
	}
	if h := got["etc/kmodlab"]; h == nil || !h.Mode.IsDir() {
		t.Error("parent directories must be created")
	}
}
