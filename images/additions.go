package images

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images/debian"
)

// overlayVersion is part of every overlay's cache key: bump it when the layout changes.
const overlayVersion = 1

// Additions are what one job adds to a target's guest: Debian packages of the target's
// architecture and suite (with the shared libraries their programs need) and in-tree
// modules of the image's own kernel package (with modules.dep, so modprobe resolves
// their dependencies).
type Additions struct {
	Packages []string `json:"packages,omitempty"`
	Modules  []string `json:"modules,omitempty"`
}

// Empty reports whether nothing is added.
func (a Additions) Empty() bool { return len(a.Packages) == 0 && len(a.Modules) == 0 }

func (a Additions) sorted() Additions {
	p := append([]string(nil), a.Packages...)
	m := append([]string(nil), a.Modules...)
	sort.Strings(p)
	sort.Strings(m)
	return Additions{Packages: p, Modules: m}
}

var (
	pkgNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	modNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// CheckNames checks the names' syntax (no mirror needed): field ("packages" or
// "modules") and the problem, or "" when fine.
func (a Additions) CheckNames() (field, problem string) {
	for _, p := range a.Packages {
		if !pkgNameRe.MatchString(p) {
			return "packages", fmt.Sprintf("%q is not a Debian package name", p)
		}
	}
	for _, m := range a.Modules {
		if !modNameRe.MatchString(m) {
			return "modules", fmt.Sprintf("%q is not a module name", m)
		}
	}
	return "", ""
}

// AdditionError is a package or module the target does not have.
type AdditionError struct {
	Field string // "guest.packages" or "guest.modules"
	Msg   string
}

func (e *AdditionError) Error() string { return e.Field + ": " + e.Msg }

// CheckAdditions checks that every package exists for t's architecture in t's suite
// and every module in t's kernel package, before anything boots.
func (b *Builder) CheckAdditions(ctx context.Context, t *Target, a Additions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.resolve(ctx, t); err != nil {
		return err
	}
	if b.cachedOverlay(t, a) {
		// BuildWith checked these additions against this image when it built the
		// overlay the run will use: unpacking the kernel packages again to look for
		// the modules took ~7 s a target on every run.
		return nil
	}
	if err := b.checkPackages(ctx, t, a); err != nil {
		return err
	}
	if len(a.Modules) == 0 {
		return nil
	}
	stage, cleanup, err := b.kernelStage(ctx, t)
	if err != nil {
		return err
	}
	defer cleanup()
	_, err = b.additionModules(t, stage, a)
	return err
}

func (b *Builder) checkPackages(ctx context.Context, t *Target, a Additions) error {
	if field, problem := a.CheckNames(); field != "" {
		return &AdditionError{Field: "guest." + field, Msg: problem}
	}
	root, err := b.rootFor(ctx, t.Suite)
	if err != nil {
		return err
	}
	for _, p := range a.Packages {
		if !root.Has(ctx, p, t.DebArch) {
			return &AdditionError{Field: "guest.packages", Msg: fmt.Sprintf("no package %q for %s in %s", p, t.DebArch, t.Suite)}
		}
	}
	return nil
}

// kernelStage unpacks t's kernel packages into a temporary directory.
func (b *Builder) kernelStage(ctx context.Context, t *Target) (string, func(), error) {
	debs, err := b.kernelDebs(ctx, t)
	if err != nil {
		return "", nil, err
	}
	stage, err := b.unpack(ctx, "kernel-", debs)
	if err != nil {
		return "", nil, err
	}
	return stage, func() { os.RemoveAll(stage) }, nil
}

// additionModules resolves the image's modules and the additions' together (paths
// relative to the kernel's modules tree, dependencies first) and says which are new.
func (b *Builder) additionModules(t *Target, stage string, a Additions) (all []string, err error) {
	tree := ModulesTree(stage, t.Kernel.Release)
	for _, m := range a.Modules {
		if _, err := ResolveModules(tree, []string{m}); err != nil {
			if strings.Contains(err.Error(), "needed by") {
				return nil, &AdditionError{Field: "guest.modules", Msg: err.Error()}
			}
			return nil, &AdditionError{Field: "guest.modules",
				Msg: fmt.Sprintf("no module %q in %s's kernel package (%s; built in, or not built at all)", m, t.Name, t.Kernel.Release)}
		}
	}
	return ResolveModules(tree, append(append([]string(nil), t.Modules...), a.Modules...))
}

// overlayDir is where the overlay of img with a (sorted) is cached.
func (b *Builder) overlayDir(t *Target, img *Image, a Additions) string {
	spec, _ := json.Marshal(a)
	h := sha256.Sum256([]byte(fmt.Sprintf("kmodlab-overlay-v%d\n%s\n%s\n%s", overlayVersion, img.Dir, img.Hash, spec)))
	return filepath.Join(b.CacheDir, "overlays", t.Name+"-"+hex.EncodeToString(h[:8]))
}

// cachedOverlay says whether t's image and its overlay with a are both in the cache
// already (it builds nothing). Call with b.mu held, after resolve.
func (b *Builder) cachedOverlay(t *Target, a Additions) bool {
	dir, _, err := b.imageDir(t)
	if err != nil {
		return false
	}
	img, err := loadImage(t, dir)
	if err != nil {
		return false
	}
	_, err = loadOverlay(img, b.overlayDir(t, img, a.sorted()))
	return err == nil
}

// BuildWith returns t's image with a's packages and modules: the base image's archive
// and an overlay archive concatenated into one initramfs (QEMU's -initrd takes one
// file; the kernel unpacks concatenated archives in order, later files replacing
// earlier ones). The result is cached by content: two jobs with the same additions on
// the same image share it.
func (b *Builder) BuildWith(ctx context.Context, t *Target, a Additions) (*Image, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	img, err := b.buildLocked(ctx, t)
	if err != nil || a.Empty() {
		return img, err
	}
	a = a.sorted()
	dir := b.overlayDir(t, img, a)
	if o, err := loadOverlay(img, dir); err == nil {
		return o, nil
	}
	start := time.Now()
	if err := b.checkPackages(ctx, t, a); err != nil {
		return nil, err
	}
	if err := b.buildOverlay(ctx, t, img, a, dir); err != nil {
		return nil, fmt.Errorf("guest additions for %s: %w", t.Name, err)
	}
	b.log().Info("guest additions built", "target", t.Name, "dir", dir, "seconds", time.Since(start).Seconds())
	return loadOverlay(img, dir)
}

// OverlayManifest is written next to an image with additions.
type OverlayManifest struct {
	Base      string    `json:"base_image"`
	Additions Additions `json:"additions"`
	Debs      []string  `json:"debs"`
	Modules   []string  `json:"modules"` // modules added, dependencies included
	ImageHash string    `json:"image_hash"`
	Built     time.Time `json:"built"`
}

func loadOverlay(base *Image, dir string) (*Image, error) {
	data, err := os.ReadFile(filepath.Join(dir, "overlay.json"))
	if err != nil {
		return nil, err
	}
	var m OverlayManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	img := *base
	img.Dir = dir
	img.Initrd = filepath.Join(dir, "initramfs.cpio")
	img.Hash = m.ImageHash
	if _, err := os.Stat(img.Initrd); err != nil {
		return nil, err
	}
	return &img, nil
}

func (b *Builder) buildOverlay(ctx context.Context, t *Target, img *Image, a Additions, dir string) error {
	tmp := filepath.Join(b.CacheDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	work, err := os.MkdirTemp(tmp, t.Name+"-overlay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ov := &initramfs{stage: filepath.Join(work, "all")}
	m := OverlayManifest{Base: img.Dir, Additions: a, Built: time.Now().UTC()}
	if len(a.Packages) > 0 {
		root, err := b.rootFor(ctx, t.Suite)
		if err != nil {
			return err
		}
		debs, err := root.DownloadClosure(ctx, a.Packages, t.DebArch, filepath.Join(work, "debs"))
		if err != nil {
			return err
		}
		named := map[string]bool{}
		for _, p := range a.Packages {
			named[p] = true
		}
		own := filepath.Join(work, "own")
		for _, d := range debs {
			m.Debs = append(m.Debs, filepath.Base(d))
			if err := debian.Extract(ctx, d, ov.stage); err != nil {
				return err
			}
			if name, _, _ := strings.Cut(filepath.Base(d), "_"); named[name] {
				if err := debian.Extract(ctx, d, own); err != nil {
					return err
				}
			}
		}
		if err := ov.addPackages(t, own); err != nil {
			return err
		}
	}
	if len(a.Modules) > 0 {
		stage, cleanup, err := b.kernelStage(ctx, t)
		if err != nil {
			return err
		}
		defer cleanup()
		all, err := b.additionModules(t, stage, a)
		if err != nil {
			return err
		}
		base, err := ResolveModules(ModulesTree(stage, t.Kernel.Release), t.Modules)
		if err != nil {
			return err
		}
		added, err := ov.addModules(ModulesTree(stage, t.Kernel.Release), t.Kernel.Release, all, base)
		if err != nil {
			return err
		}
		m.Modules = added
	}
	out := filepath.Join(work, "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	overlay := filepath.Join(work, "overlay.cpio")
	if err := ov.write(overlay); err != nil {
		return err
	}
	baseData, err := os.ReadFile(img.Initrd)
	if err != nil {
		return err
	}
	ovData, err := os.ReadFile(overlay)
	if err != nil {
		return err
	}
	for len(baseData)%4 != 0 { // each archive starts 4-byte aligned
		baseData = append(baseData, 0)
	}
	combined := filepath.Join(out, "initramfs.cpio")
	if err := os.WriteFile(combined, append(baseData, ovData...), 0o600); err != nil {
		return err
	}
	if m.ImageHash, err = hashFiles(img.Kernel, combined); err != nil {
		return err
	}
	return publish(out, dir, "overlay.json", m)
}

// skipData are package paths a guest never needs.
var skipData = []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/",
	"/usr/share/lintian/", "/usr/share/bug/"}

// addPackages adds every file of the named packages (unpacked in own) and the ELF
// closure of their programs and libraries, taken from the stage holding all packages.
func (r *initramfs) addPackages(t *Target, own string) error {
	var bins []string
	err := filepath.WalkDir(own, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := "/" + filepath.ToSlash(strings.TrimPrefix(p, own+string(filepath.Separator)))
		for _, s := range skipData {
			if strings.HasPrefix(rel, s) {
				return nil
			}
		}
		if err := r.addFromStage(rel); err != nil {
			target, lerr := os.Readlink(p)
			if lerr != nil {
				return err
			}
			r.symlink(rel, target) // a link into another package (alternatives): kept as is
		}
		if d.Type().IsRegular() && isDynamicELF(p) {
			bins = append(bins, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	files, err := ELFClosure(r.stage, t.LibDirs(), bins)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := r.addFromStage(f); err != nil {
			return err
		}
	}
	return nil
}

// isDynamicELF reports an ELF file with dynamic dependencies (program or library).
func isDynamicELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Section(".dynamic") != nil
}

// addModules adds the modules in all that are not in base (paths relative to tree) and
// writes modules.dep for all of them, in depmod's form: each module's dependencies,
// transitively, listed so that busybox and kmod modprobe load the last one first.
func (r *initramfs) addModules(tree, release string, all, base []string) ([]string, error) {
	inBase := map[string]bool{}
	for _, m := range base {
		inBase[m] = true
	}
	byName := map[string]string{}
	for _, m := range all {
		byName[modName(path.Base(m))] = m
	}
	dir := path.Join("/lib/modules", release)
	var added []string
	var dep strings.Builder
	for _, m := range all {
		data, err := ReadModule(filepath.Join(tree, m))
		if err != nil {
			return nil, err
		}
		if !inBase[m] {
			r.add(path.Join(dir, stripCompression(m)), 0o644, data)
			added = append(added, path.Base(stripCompression(m)))
		}
		order, err := ResolveModules(tree, []string{modName(path.Base(m))})
		if err != nil {
			return nil, err
		}
		var deps []string
		for i := len(order) - 2; i >= 0; i-- { // without the module itself, last loaded first
			deps = append(deps, stripCompression(order[i]))
		}
		fmt.Fprintf(&dep, "%s:", stripCompression(m))
		if len(deps) > 0 {
			dep.WriteString(" " + strings.Join(deps, " "))
		}
		dep.WriteString("\n")
	}
	r.add(path.Join(dir, "modules.dep"), 0o644, []byte(dep.String()))
	return added, nil
}

// CheckAdditionsCommand is the shell command that checks a board for the additions it
// cannot install: each missing package (dpkg) or module (neither loadable, loaded, nor
// built in) is printed as "missing package NAME" / "missing module NAME". ParseMissing
// reads its output.
func CheckAdditionsCommand(a Additions) string {
	var b strings.Builder
	for _, p := range a.Packages {
		fmt.Fprintf(&b, "dpkg-query -W -f='${Status}' %s 2>/dev/null | grep -q 'ok installed' || echo 'missing package %s'; ", p, p)
	}
	for _, m := range a.Modules {
		u := strings.ReplaceAll(m, "-", "_")
		fmt.Fprintf(&b, "{ modinfo %s >/dev/null 2>&1 || test -d /sys/module/%s || grep -qw '%s' /lib/modules/$(uname -r)/modules.builtin 2>/dev/null; } || echo 'missing module %s'; ", m, u, m, m)
	}
	b.WriteString("echo kmodlab-check-done")
	return b.String()
}

// ParseMissing reads CheckAdditionsCommand's output: the missing additions ("package
// fio", "module zram"), or an error when the check did not run to its end.
func ParseMissing(out string) ([]string, error) {
	var missing []string
	done := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "kmodlab-check-done" {
			done = true
		}
		if rest, ok := strings.CutPrefix(l, "missing "); ok {
			missing = append(missing, rest)
		}
	}
	if !done {
		return missing, fmt.Errorf("the additions check did not finish: %s", strings.TrimSpace(out))
	}
	return missing, nil
}
