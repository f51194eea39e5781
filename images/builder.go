package images

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/images/debian"
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
	// OwnKernels are users' kernel build directories by target (TARGET+own).
	OwnKernels map[string]string
	// JobFragments are merged into every built line (TARGET+FRAGMENT) after its own.
	JobFragments []JobFragment
	apt          map[string]*debian.Root
	resolved     map[string]Kernel // sid-style lines, resolved once per process
	kernels      map[string]*built // built lines, looked up once per process
	mu           sync.Mutex        // one build at a time: targets booting in parallel share the apt roots
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
		archs, err := DebArchs()
		if err != nil {
			return nil, err
		}
		r = &debian.Root{Dir: dir, Suite: suite, Log: b.log(), Architectures: archs}
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
	dir, pub, err := b.imageDir(t)
	if err != nil {
		return nil, err
	}
	if img, err := loadImage(t, dir); err == nil {
		return img, nil
	}
	start := time.Now()
	if err := b.build(ctx, t, dir, pub); err != nil {
		return nil, fmt.Errorf("build image %s: %w", t.Name, err)
	}
	b.log().Info("image built", "target", t.Name, "dir", dir, "seconds", time.Since(start).Seconds())
	return loadImage(t, dir)
}

// imageDir is where t's image is cached, and the lab's client public key it is keyed
// by (and built with). Call after resolve.
func (b *Builder) imageDir(t *Target) (dir string, pub ssh.PublicKey, err error) {
	client, err := ClientKey(b.KeyDir())
	if err != nil {
		return "", nil, fmt.Errorf("client key: %w", err)
	}
	return filepath.Join(b.CacheDir, "images", b.imageKey(t, client.PublicKey())), client.PublicKey(), nil
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
	f, err := t.format()
	if err != nil {
		return nil, err
	}
	img := &Image{Target: t, Dir: dir, Kernel: filepath.Join(dir, f.file),
		Initrd: filepath.Join(dir, "initramfs.cpio"), HostKey: hk, Hash: m.ImageHash}
	if _, err := os.Stat(img.Kernel); err != nil {
		return nil, err
	}
	if f.stub {
		img.BootStub = filepath.Join(dir, bootStubFile)
	}
	return img, nil
}

func (b *Builder) build(ctx context.Context, t *Target, dir string, client ssh.PublicKey) error {
	root, err := b.root(ctx)
	if err != nil {
		return err
	}
	udebs, err := root.Download(ctx, t.UserlandPackages()) // named in the manifest
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

	f, err := t.format()
	if err != nil {
		return err
	}
	hashed, err := f.stage(ctx, t, kernel, out)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
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
	ih, err := hashFiles(append(hashed, filepath.Join(out, "initramfs.cpio"))...)
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
	return publish(out, dir, "manifest.json", m)
}

// publish writes the staged cache entry out's manifest (name, as JSON) and moves the
// entry into place at dir, replacing what stood there. The entry stays 0700, as
// MkdirTemp made it: images hold the guest's SSH host key.
func publish(out, dir, name string, manifest any) error {
	data, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(out, dir); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
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

// fetch downloads pkgs from root and unpacks them into a new stage directory (unpack);
// the caller removes it.
func (b *Builder) fetch(ctx context.Context, root *debian.Root, prefix string, pkgs []string) (string, error) {
	debs, err := root.Download(ctx, pkgs)
	if err != nil {
		return "", err
	}
	return b.unpack(ctx, prefix, debs)
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
