package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
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
const builderVersion = 5

// ReadyMarker is printed on the serial console by /init once dropbear listens.
const ReadyMarker = "KMODLAB-READY"

// Image is a built guest: kernel, initramfs and the host key the guest's SSH server uses.
type Image struct {
	Target  *Target
	Dir     string
	Kernel  string
	Initrd  string
	HostKey ssh.PublicKey
	Hash    string // content hash of kernel + initramfs, recorded in reports
}

// Manifest is written next to a built image.
type Manifest struct {
	Target     string    `json:"target"`
	RecipeHash string    `json:"recipe_hash"`
	Release    string    `json:"kernel_release"`
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
	apt      *debian.Root
	mu       sync.Mutex // one build at a time: targets booting in parallel share the apt root
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
	if b.apt == nil {
		b.apt = &debian.Root{Dir: filepath.Join(b.CacheDir, "apt"), Log: b.log()}
	}
	return b.apt, b.apt.Update(ctx, b.Refresh)
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
	kernel := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(filepath.Join(dir, "vmlinux")); err == nil {
		kernel = filepath.Join(dir, "vmlinux")
	}
	return &Image{Target: t, Dir: dir, Kernel: kernel,
		Initrd: filepath.Join(dir, "initramfs.cpio"), HostKey: hk, Hash: m.ImageHash}, nil
}

func (b *Builder) build(ctx context.Context, t *Target, dir string, client ssh.PublicKey) error {
	root, err := b.root(ctx)
	if err != nil {
		return err
	}
	specs := t.ImagePackages()
	debs, err := root.Download(ctx, specs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(b.CacheDir, "tmp"), 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Join(b.CacheDir, "tmp"), t.Name+"-stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, d := range debs {
		if err := debian.Extract(ctx, d, stage); err != nil {
			return err
		}
	}
	out, err := os.MkdirTemp(filepath.Join(b.CacheDir, "tmp"), t.Name+"-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)

	kernel := filepath.Join(stage, "boot", "vmlinuz-"+t.Kernel.Release)
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
	default:
		return fmt.Errorf("%s: qemu.kernel_format %q: want bzimage or vmlinux", t.File(), t.QEMU.KernelFormat)
	}
	modules, err := ResolveModules(filepath.Join(stage, "lib/modules", t.Kernel.Release), t.Modules)
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
	if err := ird.write(filepath.Join(out, "initramfs.cpio")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "host_key.pub"), ssh.MarshalAuthorizedKey(hostSigner.PublicKey()), 0o644); err != nil {
		return err
	}
	ih, err := hashFiles(filepath.Join(out, kernelFile), filepath.Join(out, "initramfs.cpio"))
	if err != nil {
		return err
	}
	m := Manifest{Target: t.Name, RecipeHash: t.Hash(), Release: t.Kernel.Release, ImageHash: ih, Built: time.Now().UTC()}
	for _, d := range debs {
		m.Packages = append(m.Packages, filepath.Base(d))
	}
	for _, mod := range modules {
		m.Modules = append(m.Modules, path.Base(mod))
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), data, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir)
	return os.Rename(out, dir)
}

// Headers returns a kernel build tree for t (the directory to pass as make -C), fetched
// and fixed up on first use: the Makefile's absolute include and absolute symlinks are
// made relative so the tree works from the cache.
func (b *Builder) Headers(ctx context.Context, t *Target) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := sha256.Sum256([]byte(fmt.Sprintf("headers-v1\n%s\n%s\n%s", t.Kernel.Release, t.Kernel.Version,
		strings.Join(t.HeaderPackages(hostDebArch()), "\n"))))
	dir := filepath.Join(b.CacheDir, "headers", t.Name+"-"+hex.EncodeToString(h[:8]))
	build := filepath.Join(dir, "usr/src", "linux-headers-"+t.Kernel.Release)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return build, nil
	}
	root, err := b.root(ctx)
	if err != nil {
		return "", err
	}
	debs, err := root.Download(ctx, t.HeaderPackages(hostDebArch()))
	if err != nil {
		return "", fmt.Errorf("headers for %s: %w", t.Name, err)
	}
	os.RemoveAll(dir)
	for _, d := range debs {
		if err := debian.Extract(ctx, d, dir); err != nil {
			return "", err
		}
	}
	if err := debian.FixAbsoluteLinks(dir); err != nil {
		return "", err
	}
	mk := filepath.Join(build, "Makefile")
	data, err := os.ReadFile(mk)
	if err != nil {
		return "", fmt.Errorf("headers for %s: %w", t.Name, err)
	}
	fixed := strings.ReplaceAll(string(data), "include /usr/src/", "include $(dir $(lastword $(MAKEFILE_LIST)))../")
	if err := os.WriteFile(mk, []byte(fixed), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	return build, nil
}

// ExtractVmlinux finds the XZ stream inside a compressed kernel image and writes the
// uncompressed ELF (the kernel's own scripts/extract-vmlinux does the same). It needs
// the xz tool (xz-utils).
func ExtractVmlinux(ctx context.Context, image, dst string) error {
	data, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	magic := []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	for off := 0; ; {
		i := bytes.Index(data[off:], magic)
		if i < 0 {
			return fmt.Errorf("%s: no XZ-compressed vmlinux inside", image)
		}
		off += i
		cmd := exec.CommandContext(ctx, "xz", "-dc")
		cmd.Stdin = bytes.NewReader(data[off:])
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		cmd.Stdout = out
		runErr := cmd.Run() // xz complains about the bytes after the stream: expected
		out.Close()
		if errors.Is(runErr, exec.ErrNotFound) {
			return fmt.Errorf("xz not found: install xz-utils")
		}
		if f, err := elf.Open(dst); err == nil {
			f.Close()
			return nil
		}
		off++
	}
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
		if err == nil && strings.HasSuffix(p, ".ko") {
			index[modName(filepath.Base(p))] = p
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
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

func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(file, ".ko"), "-", "_")
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
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section (not a kernel module?)", ko)
	}
	data, err := sec.Data()
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

func (r *initramfs) add(name string, mode cpio.FileMode, data []byte) {
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	r.mkdirs(path.Dir(name))
	r.entries[name] = entry{mode: mode, data: data}
}

func (r *initramfs) mkdirs(dir string) {
	for dir != "/" && dir != "." {
		if _, ok := r.entries[dir]; !ok {
			r.entries[dir] = entry{mode: cpio.TypeDir | 0o755}
		}
		dir = path.Dir(dir)
	}
}

func (r *initramfs) symlink(name, target string) {
	r.mkdirs(path.Dir(name))
	r.entries[name] = entry{mode: cpio.TypeSymlink | 0o777, link: target}
}

// addFromStage copies a staged file, following symlinks inside the stage and keeping
// the link too so the loader finds libraries by either name.
func (r *initramfs) addFromStage(p string) error {
	for i := 0; i < 10; i++ {
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
	for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/proc", "/sys", "/dev", "/tmp", "/run", "/mnt", "/var/log"} {
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
		data, err := os.ReadFile(filepath.Join(r.stage, tree, m))
		if err != nil {
			return err
		}
		dst := path.Join(tree, m)
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
	f, err := os.Create(file)
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
