package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/kmodlab/kmodlab/images/debian"
	"github.com/kmodlab/kmodlab/internal/fsutil"
	"golang.org/x/crypto/ssh"
)

// builderVersion is part of every image's cache key: bump it when the image layout changes.
const builderVersion = 6

// ReadyMarker is printed on the serial console by /init once dropbear listens.
const ReadyMarker = "KMODLAB-READY"

// Image is a built guest: kernel, initramfs and the host key the guest's SSH server uses.
type Image struct {
	Target *Target
	Dir    string
	Kernel string
	// BootStub, for an arm-image kernel, is what QEMU's -kernel loads: it jumps to
	// Kernel, which the generic loader placed at the recipe's kernel_addr.
	BootStub string
	Initrd   string
	HostKey  ssh.PublicKey
	Hash     string // content hash of kernel + initramfs, recorded in reports
}

// Manifest is written next to a built image.
type Manifest struct {
	Target     string    `json:"target"`
	RecipeHash string    `json:"recipe_hash"`
	Line       string    `json:"line"`
	Suite      string    `json:"suite"`
	Release    string    `json:"kernel_release"`
	Version    string    `json:"kernel_version"` // the kernel package's version (resolved at build time for sid)
	Packages   []string  `json:"packages"`
	Modules    []string  `json:"modules"`
	ImageHash  string    `json:"image_hash"`
	Built      time.Time `json:"built"`
}

// Builder builds images and header trees into a cache directory.
type Builder struct {
	CacheDir string
	Log      *slog.Logger
	Refresh  bool // force an apt update
	apt      map[string]*debian.Root
	resolved map[string]Kernel // sid-style lines, resolved once per process
	kernels  map[string]*built // built lines, looked up once per process
	mu       sync.Mutex        // one build at a time: targets booting in parallel share the apt roots
}

// DefaultCacheDir is $XDG_CACHE_HOME/kmodlab or ~/.cache/kmodlab (KMODLAB_CACHE overrides).
func DefaultCacheDir() string {
	if d := os.Getenv("KMODLAB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "kmodlab")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "kmodlab-cache")
	}
	return filepath.Join(home, ".cache", "kmodlab")
}

func (b *Builder) log() *slog.Logger {
	if b.Log == nil {
		return slog.Default()
	}
	return b.Log
}

func (b *Builder) root(ctx context.Context) (*debian.Root, error) {
	return b.rootFor(ctx, debian.HostSuite)
}

// rootFor is the private apt root of one Debian suite: "apt" for the host's (bookworm),
// "apt-SUITE" for the other kernel lines, so each suite's lists and packages stay apart.
func (b *Builder) rootFor(ctx context.Context, suite string) (*debian.Root, error) {
	if suite == "" {
		suite = debian.HostSuite
	}
	if b.apt == nil {
		b.apt = map[string]*debian.Root{}
	}
	r, ok := b.apt[suite]
	if !ok {
		dir := filepath.Join(b.CacheDir, "apt")
		if suite != debian.HostSuite {
			dir += "-" + suite
		}
		r = &debian.Root{Dir: dir, Suite: suite, Log: b.log()}
		b.apt[suite] = r
	}
	return r, r.Update(ctx, b.Refresh)
}

// Resolve fills the kernel of a line that names a flavour instead of a pinned version
// (sid): the newest kernel the suite serves for it, once per Builder.
func (b *Builder) Resolve(ctx context.Context, t *Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.resolve(ctx, t)
}

func (b *Builder) resolve(ctx context.Context, t *Target) error {
	return t.source().resolve(ctx, b, t)
}

// KeyDir holds the lab's SSH client key.
func (b *Builder) KeyDir() string { return filepath.Join(b.CacheDir, "keys") }

func (b *Builder) imageKey(t *Target, client ssh.PublicKey) string {
	h := sha256.Sum256([]byte(t.Hash() + "\n" + string(ssh.MarshalAuthorizedKey(client))))
	return t.Name + "-" + hex.EncodeToString(h[:8])
}

// Build returns the cached image for t, building it first if the recipe changed.
func (b *Builder) Build(ctx context.Context, t *Target) (*Image, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buildLocked(ctx, t)
}

func (b *Builder) buildLocked(ctx context.Context, t *Target) (*Image, error) {
	if err := b.resolve(ctx, t); err != nil {
		return nil, err
	}
	client, err := ClientKey(b.KeyDir())
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	dir := filepath.Join(b.CacheDir, "images", b.imageKey(t, client.PublicKey()))
	if img, err := loadImage(t, dir); err == nil {
		return img, nil
	}
	start := time.Now()
	if err := b.build(ctx, t, dir, client.PublicKey()); err != nil {
		return nil, fmt.Errorf("build image %s: %w", t.Name, err)
	}
	b.log().Info("image built", "target", t.Name, "dir", dir, "seconds", time.Since(start).Seconds())
	return loadImage(t, dir)
}

func loadImage(t *Target, dir string) (*Image, error) {
	var m Manifest
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		return nil, err
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		return nil, err
	}
	img := &Image{Target: t, Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initramfs.cpio"), HostKey: hk, Hash: m.ImageHash}
	for _, k := range []string{"vmlinux", "Image"} {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			img.Kernel = filepath.Join(dir, k)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, bootStubFile)); err == nil {
		img.BootStub = filepath.Join(dir, bootStubFile)
	}
	return img, nil
}

func (b *Builder) build(ctx context.Context, t *Target, dir string, client ssh.PublicKey) error {
	root, err := b.root(ctx)
	if err != nil {
		return err
	}
	udebs, err := root.Download(ctx, t.UserlandPackages())
	if err != nil {
		return err
	}
	stage, err := b.unpack(ctx, t.Name+"-stage-", udebs)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	kernel, parts, err := t.source().stage(ctx, b, t, stage)
	if err != nil {
		return err
	}
	out, err := os.MkdirTemp(filepath.Join(b.CacheDir, "tmp"), t.Name+"-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)

	kernelFile := "vmlinuz"
	switch t.QEMU.KernelFormat {
	case "", "bzimage", "zimage":
		if err := fsutil.CopyFile(kernel, filepath.Join(out, kernelFile), 0o644); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
	case "vmlinux":
		kernelFile = "vmlinux"
		if err := ExtractVmlinux(ctx, kernel, filepath.Join(out, kernelFile)); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
	case "arm-image":
		kernelFile = "Image"
		if err := ExtractArmImage(ctx, kernel, filepath.Join(out, kernelFile)); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		if err := os.WriteFile(filepath.Join(out, bootStubFile), ArmBootStub(t.QEMU.KernelAddr), 0o644); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: qemu.kernel_format %q: want bzimage, vmlinux or arm-image", t.File(), t.QEMU.KernelFormat)
	}
	modules, err := ResolveModules(ModulesTree(stage, t.Kernel.Release), t.Modules)
	if err != nil {
		return err
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return err
	}
	ird := &initramfs{stage: stage}
	if err := ird.assemble(t, modules, DropbearEd25519(hostPriv), client); err != nil {
		return err
	}
	// 0600: the archive holds the guest's private host key.
	if err := ird.write(filepath.Join(out, "initramfs.cpio")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "host_key.pub"), ssh.MarshalAuthorizedKey(hostSigner.PublicKey()), 0o644); err != nil {
		return err
	}
	hashed := []string{filepath.Join(out, kernelFile), filepath.Join(out, "initramfs.cpio")}
	if t.QEMU.KernelFormat == "arm-image" {
		hashed = append(hashed, filepath.Join(out, bootStubFile))
	}
	ih, err := hashFiles(hashed...)
	if err != nil {
		return err
	}
	m := Manifest{Target: t.Name, RecipeHash: t.Hash(), Line: t.Line, Suite: t.Suite, Release: t.Kernel.Release,
		Version: t.Kernel.Version, ImageHash: ih, Built: time.Now().UTC()}
	m.Packages = parts
	for _, d := range udebs {
		m.Packages = append(m.Packages, filepath.Base(d))
	}
	for _, mod := range modules {
		m.Modules = append(m.Modules, path.Base(stripCompression(mod)))
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), data, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(out, dir); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700) // MkdirTemp made it 0700; keep it so
}

// ModulesTree is the kernel's modules directory inside an unpacked kernel package:
// /lib/modules/REL, or /usr/lib/modules/REL in merged-/usr packaging (trixie on).
func ModulesTree(stage, release string) string {
	usr := filepath.Join(stage, "usr/lib/modules", release)
	if st, err := os.Stat(usr); err == nil && st.IsDir() {
		return usr
	}
	return filepath.Join(stage, "lib/modules", release)
}

// Headers returns the tree a module for t is built against (the directory to pass as
// make -C), fetched or built on first use.
func (b *Builder) Headers(ctx context.Context, t *Target) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.resolve(ctx, t); err != nil {
		return "", err
	}
	return t.source().headers(ctx, b, t)
}

// fixCompiler points the headers' CC at the host's compiler when the versioned one
// they name (a newer suite's gcc-14, gcc-16) is not installed: the module is then built
// by the host's gcc, which kbuild accepts (Debian's headers skip the version check).
func fixCompiler(dir, build, cross string) error {
	vars := filepath.Join(build, ".kernelvariables")
	data, err := os.ReadFile(vars)
	if err != nil {
		return nil // older headers have no such file
	}
	re := regexp.MustCompile(`\$\(CROSS_COMPILE\)gcc-(\d+)`)
	m := re.FindSubmatch(data)
	if m == nil {
		return nil
	}
	if _, err := exec.LookPath(cross + "gcc-" + string(m[1])); err == nil {
		return nil
	}
	if err := os.WriteFile(vars, re.ReplaceAll(data, []byte("$(CROSS_COMPILE)gcc")), 0o644); err != nil {
		return err
	}
	// gcc 14's -fmin-function-alignment (x86 kernels ask for it) is -falign-functions
	// to an older gcc: the same function alignment for the module's code.
	mks, _ := filepath.Glob(filepath.Join(dir, "usr/src/linux-headers-*-common/Makefile"))
	for _, mk := range mks {
		if data, err := os.ReadFile(mk); err == nil && bytes.Contains(data, []byte("-fmin-function-alignment=")) {
			if _, ok := exec.LookPath(cross + "gcc"); ok == nil && !gccAccepts(cross+"gcc", "-fmin-function-alignment=16") {
				data = bytes.ReplaceAll(data, []byte("-fmin-function-alignment="), []byte("-falign-functions="))
				if err := os.WriteFile(mk, data, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func gccAccepts(gcc, flag string) bool {
	cmd := exec.Command(gcc, flag, "-x", "c", "-c", "-o", os.DevNull, "-")
	cmd.Stdin = strings.NewReader("int x;\n")
	return cmd.Run() == nil
}

// ExtractVmlinux finds the XZ stream inside a compressed kernel image and writes the
// uncompressed ELF (the kernel's own scripts/extract-vmlinux does the same). It needs
// the xz tool (xz-utils), or zstd for zstd-compressed kernels.
func ExtractVmlinux(ctx context.Context, image, dst string) error {
	out, err := extractPayload(ctx, image, func(out []byte, _ error) bool {
		// The tool may complain about the bytes after the stream: what counts is an ELF.
		f, err := elf.NewFile(bytes.NewReader(out))
		return err == nil && f.Close() == nil
	})
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// ExtractArmImage writes the uncompressed kernel (arch/arm/boot/Image) held by an ARM
// zImage. An Image has no header to recognise, so the stream must decompress whole.
func ExtractArmImage(ctx context.Context, zimage, dst string) error {
	out, err := extractPayload(ctx, zimage, func(out []byte, runErr error) bool {
		return runErr == nil && len(out) >= 1<<20
	})
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// extractPayload finds the compressed kernel inside a self-decompressing image: the
// XZ (else zstd) stream after the decompressor. The decompressor's own code holds the
// magic too, so each place it occurs is tried until ok accepts what the tool made of
// it (its output, and its error: the image goes on after the stream).
func extractPayload(ctx context.Context, image string, ok func(out []byte, runErr error) bool) ([]byte, error) {
	data, err := os.ReadFile(image)
	if err != nil {
		return nil, err
	}
	tool, args, magic := "xz", []string{"-dc", "--single-stream"}, []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	if !bytes.Contains(data, magic) {
		tool, args, magic = "zstd", []string{"-dc"}, []byte{0x28, 0xb5, 0x2f, 0xfd}
	}
	for off := 0; ; off++ {
		i := bytes.Index(data[off:], magic)
		if i < 0 {
			return nil, fmt.Errorf("%s: no XZ- or zstd-compressed kernel inside", image)
		}
		off += i
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, tool, args...)
		cmd.Stdin, cmd.Stdout = bytes.NewReader(data[off:]), &out
		runErr := cmd.Run()
		if errors.Is(runErr, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s not found: install xz-utils and zstd", tool)
		}
		if ok(out.Bytes(), runErr) {
			return out.Bytes(), nil
		}
	}
}

// bootStubFile is an arm-image's -kernel: see ArmBootStub.
const bootStubFile = "boot-stub.bin"

// ArmBootStub is the program QEMU's -kernel runs for an arm-image target: QEMU enters it
// as it would a zImage (r0 = 0, r1 = the machine type, r2 = the device tree's address,
// MMU off), and it jumps to the uncompressed kernel at addr with those registers as
// they are. It is "ldr pc, [pc, #-4]" followed by the address (little-endian).
func ArmBootStub(addr uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, 0xe51ff004)
	binary.LittleEndian.PutUint32(b[4:], uint32(addr))
	return b
}

// hostDebArch is the Debian name of the architecture kbuild's host tools run on.
func hostDebArch() string {
	switch runtime.GOARCH {
	case "arm64":
		return "arm64"
	case "386":
		return "i386"
	}
	return "amd64"
}

// ResolveModules finds the named modules under a modules tree and returns their paths
// (relative to the tree) with every dependency first, from each module's .modinfo depends=.
func ResolveModules(tree string, names []string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && isModuleFile(p) {
			index[modName(filepath.Base(p))] = p
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	builtin := Builtin(tree)
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = modName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		case 2:
			return nil
		}
		p, ok := index[name]
		if !ok && builtin[name] {
			state[name] = 2 // built into this kernel (another line may have it as a module)
			return nil
		}
		if !ok {
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) not found under %s", name, from, tree)
			}
			return fmt.Errorf("module %s not found under %s (is it built in? then drop it from the recipe's modules)", name, tree)
		}
		state[name] = 1
		deps, err := ModuleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		rel, _ := filepath.Rel(tree, p)
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Builtin reads the modules.builtin list of a modules tree (names, "-" as "_").
func Builtin(tree string) map[string]bool {
	b := map[string]bool{}
	data, _ := os.ReadFile(filepath.Join(tree, "modules.builtin"))
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b[modName(path.Base(l))] = true
		}
	}
	return b
}

func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(stripCompression(file), ".ko"), "-", "_")
}

var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

func isModuleFile(p string) bool {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// stripCompression turns x.ko.xz into x.ko.
func stripCompression(p string) string {
	for _, s := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+s) {
			return strings.TrimSuffix(p, s)
		}
	}
	return p
}

// ReadModule returns a module file's ELF bytes, decompressing .ko.xz, .ko.zst and .ko.gz
// (newer Debian kernels ship compressed modules; busybox insmod wants plain ones).
func ReadModule(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return io.ReadAll(zr)
	default:
		return data, nil
	}
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w: %s", tool, p, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// ModuleDepends reads depends= from a module's .modinfo section.
func ModuleDepends(ko string) ([]string, error) {
	info, err := ModInfo(ko)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, d := range strings.Split(info["depends"], ",") {
		if d = strings.TrimSpace(d); d != "" {
			deps = append(deps, d)
		}
	}
	return deps, nil
}

// ModInfo returns a module's .modinfo key=value pairs (the last value of repeated keys).
func ModInfo(ko string) (map[string]string, error) {
	data, err := ReadModule(ko)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section (not a kernel module?)", ko)
	}
	data, err = sec.Data()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, kv := range strings.Split(string(data), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

func hashFiles(files ...string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		in, err := os.Open(f)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, in)
		in.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// entry is one file of the initramfs.
type entry struct {
	mode cpio.FileMode
	data []byte
	link string
}

type initramfs struct {
	stage   string
	entries map[string]entry
}

// usrMerged are the top-level directories that are symlinks into /usr in the guest
// (merged /usr, as Debian has since bookworm): files of packages from any suite land on
// one canonical path, so a newer suite's library replaces the older one instead of
// hiding behind it in the loader's search order.
var usrMerged = []string{"bin", "sbin", "lib", "lib64"}

// canonical maps /bin/x, /sbin/x, /lib/x, /lib64/x to /usr/….
func canonical(name string) string {
	for _, d := range usrMerged {
		if name == "/"+d || strings.HasPrefix(name, "/"+d+"/") {
			return "/usr" + name
		}
	}
	return name
}

func (r *initramfs) add(name string, mode cpio.FileMode, data []byte) {
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	name = canonical(name)
	r.mkdirs(path.Dir(name))
	r.entries[name] = entry{mode: mode, data: data}
}

// mergedUsr adds the /bin -> usr/bin style links.
func (r *initramfs) mergedUsr() {
	for _, d := range usrMerged {
		r.mkdirs("/usr/" + d)
		r.entries["/"+d] = entry{mode: cpio.TypeSymlink | 0o777, link: "usr/" + d}
	}
}

func (r *initramfs) mkdirs(dir string) {
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	dir = canonical(dir)
	for dir != "/" && dir != "." {
		if _, ok := r.entries[dir]; !ok {
			r.entries[dir] = entry{mode: cpio.TypeDir | 0o755}
		}
		dir = path.Dir(dir)
	}
}

func (r *initramfs) symlink(name, target string) {
	name = canonical(name)
	r.mkdirs(path.Dir(name))
	r.entries[name] = entry{mode: cpio.TypeSymlink | 0o777, link: target}
}

// addFromStage copies a staged file, following symlinks inside the stage and keeping
// the link too so the loader finds libraries by either name.
func (r *initramfs) addFromStage(p string) error {
	for i := 0; i < 10; i++ {
		p = stagePath(r.stage, p)
		full := filepath.Join(r.stage, p)
		st, err := os.Lstat(full)
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			data, err := os.ReadFile(full)
			if err != nil {
				return err
			}
			r.add(p, cpio.FileMode(st.Mode().Perm()), data)
			return nil
		}
		target, err := os.Readlink(full)
		if err != nil {
			return err
		}
		r.symlink(p, target)
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return fmt.Errorf("%s: too many symlinks", p)
}

func (r *initramfs) assemble(t *Target, modules []string, hostKey []byte, client ssh.PublicKey) error {
	r.entries = map[string]entry{}
	r.mergedUsr()
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/proc", "/sys", "/dev", "/tmp", "/run", "/mnt", "/var/log"} {
		r.mkdirs(d)
	}
	initScript, err := recipeFS.ReadFile("init.sh")
	if err != nil {
		return err
	}
	r.add("/init", 0o755, initScript)
	bins := []string{"/bin/busybox", "/usr/sbin/dropbear", "/usr/bin/dropbearkey", "/usr/bin/scp", "/usr/lib/openssh/sftp-server"}
	files, err := ELFClosure(r.stage, t.DebArch, bins)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := r.addFromStage(f); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	// Debian's dropbear looks for the SFTP server here (OpenSSH 9's scp speaks SFTP).
	r.symlink("/usr/lib/sftp-server", "openssh/sftp-server")
	var list strings.Builder
	tree := path.Join("/lib/modules", t.Kernel.Release)
	for _, m := range modules {
		data, err := ReadModule(filepath.Join(ModulesTree(r.stage, t.Kernel.Release), m))
		if err != nil {
			return err
		}
		dst := path.Join(tree, stripCompression(m))
		r.add(dst, 0o644, data)
		fmt.Fprintln(&list, dst)
	}
	r.add("/etc/kmodlab/modules", 0o644, []byte(list.String()))
	r.add("/etc/dropbear/dropbear_ed25519_host_key", 0o600, hostKey)
	r.add("/root/.ssh/authorized_keys", 0o600, ssh.MarshalAuthorizedKey(client))
	r.entries["/root"] = entry{mode: cpio.TypeDir | 0o700}
	r.entries["/root/.ssh"] = entry{mode: cpio.TypeDir | 0o700}
	r.add("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	r.add("/etc/group", 0o644, []byte("root:x:0:\n"))
	r.add("/etc/shadow", 0o600, []byte("root:*:19000:0:99999:7:::\n"))
	r.add("/etc/shells", 0o644, []byte("/bin/sh\n/bin/ash\n"))
	r.add("/etc/inittab", 0o644, []byte("::shutdown:/bin/sync\n::shutdown:/bin/umount -a -r\n"))
	r.add("/etc/profile", 0o644, []byte("export PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"))
	return nil
}

// write emits the archive (newc, root-owned, fixed times so equal inputs give equal bytes).
func (r *initramfs) write(file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Uncompressed: under TCG, gunzip in the guest costs about a second of boot; QEMU
	// copies a plain archive into guest memory in no time.
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.NewWriter(bw)
	names := make([]string, 0, len(r.entries))
	for n := range r.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	mtime := time.Unix(1700000000, 0)
	for _, n := range names {
		e := r.entries[n]
		h := &cpio.Header{Name: strings.TrimPrefix(n, "/"), Mode: e.mode, ModTime: mtime}
		body := e.data
		if e.mode&cpio.ModeType == cpio.TypeSymlink {
			body = []byte(e.link)
		}
		if e.mode&cpio.ModeType == cpio.TypeDir {
			h.Links = 2
			body = nil
		}
		h.Size = int64(len(body))
		if err := w.WriteHeader(h); err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// unpack extracts debs into a new private directory under the cache's tmp (0700: an
// image stage holds the guest's SSH host key) and returns it; the caller removes it.
func (b *Builder) unpack(ctx context.Context, prefix string, debs []string) (string, error) {
	if err := os.MkdirAll(filepath.Join(b.CacheDir, "tmp"), 0o700); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(filepath.Join(b.CacheDir, "tmp"), prefix)
	if err != nil {
		return "", err
	}
	for _, d := range debs {
		if err := debian.Extract(ctx, d, stage); err != nil {
			os.RemoveAll(stage)
			return "", err
		}
	}
	return stage, nil
}
