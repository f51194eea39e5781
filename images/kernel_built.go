package images

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kmodlab/kmodlab/images/debian"
	"github.com/kmodlab/kmodlab/internal/fsutil"
)

//go:embed kconfig/*.config kconfig/base/*.config kconfig/build-kernel.sh kconfig/lean-base.sh
var kconfigFS embed.FS

// labFragment is merged into every built kernel; it is not a name a target can take.
const labFragment = "lab"

// LeanBase, named like a fragment (+lean), builds the line from a lean base, allnoconfig
// plus kconfig/base/lean-ARCH.config, in place of its Debian config trimmed to the boot
// modules: fewer options, a much shorter build, no modules beside the built-in drivers.
const LeanBase = "lean"

// leanBase returns the lean base of a kernel architecture (ARCH=).
func leanBase(arch string) ([]byte, error) {
	data, err := kconfigFS.ReadFile("kconfig/base/lean-" + arch + ".config")
	if err != nil {
		return nil, fmt.Errorf("+%s: no lean base for ARCH=%s (images/kconfig/base/lean-%s.config)", LeanBase, arch, arch)
	}
	return data, nil
}

// lean says whether t's kernel is built from the lean base.
func lean(t *Target) bool {
	for _, f := range t.Fragments {
		if f == LeanBase {
			return true
		}
	}
	return false
}

// keepModules are kept (and built in) beside the recipe's boot modules, so jobs that
// modprobe them work on a built line too.
var keepModules = []string{"loop"}

// JobFragment is a config fragment a job brings (kernel_fragments:), merged after the
// target's own into every built line the job runs, and part of the kernel's cache key.
type JobFragment struct {
	Name string // the file's base name, for logs and the build's file names
	Data []byte
}

// FragmentNames lists the config fragments a built line can name (+NAME).
func FragmentNames() []string {
	entries, _ := fs.Glob(kconfigFS, "kconfig/*.config")
	var n []string
	for _, e := range entries {
		name := strings.TrimSuffix(path.Base(e), ".config")
		if name != labFragment {
			n = append(n, name)
		}
	}
	n = append(n, LeanBase)
	sort.Strings(n)
	return n
}

// Fragment returns a fragment's text.
func Fragment(name string) ([]byte, error) {
	return kconfigFS.ReadFile("kconfig/" + name + ".config")
}

// builtKernel is a kernel the lab builds from the line's Debian source package
// (linux-source-X.Y of its suite): the line's Debian config as the base, trimmed to
// the modules the recipe boots with and those built in, then the lab's fragment and the
// target's fragments. Cached by the hash of all of that and the compiler; built with
// ccache when the host has it; one build at a time across processes.
type builtKernel struct{}

func (builtKernel) key(t *Target) string {
	return "built " + strings.Join(t.Fragments, "+") + " " + t.builtKey
}

// debianLine is the target's Debian kernel, whose source and config a build starts from.
func debianLine(t *Target) *Target {
	c := *t
	c.Name = strings.SplitN(t.Name, "+", 2)[0]
	c.Fragments = nil
	return &c
}

// built is where a built kernel lives in the cache.
type built struct {
	dir     string // cache/kernels/NAME-KEY
	src     string // the unpacked source tree
	out     string // the build tree (make O=), also what modules build against
	release string
	version string // the source package's version
	key     string
}

func (k *built) complete() bool {
	_, err := os.Stat(filepath.Join(k.dir, ".complete"))
	return err == nil
}

// resolve builds the kernel unless the cache has it, and fills t.Kernel with the
// built kernel's release and its source's version.
func (builtKernel) resolve(ctx context.Context, b *Builder, t *Target) error {
	if t.builtKey != "" {
		return nil
	}
	k, err := b.kernelBuild(ctx, t)
	if err != nil {
		return fmt.Errorf("%s: %w", t.Name, err)
	}
	t.Kernel = Kernel{Release: k.release, Version: k.version, Image: "(built from linux-source " + k.version + ")"}
	return nil
}

func (builtKernel) stage(ctx context.Context, b *Builder, t *Target, stage string) (string, []string, error) {
	k, err := b.kernelBuild(ctx, t)
	if err != nil {
		return "", nil, err
	}
	kernel, err := stageBuildTree(t, k.out, k.release, stage)
	if err != nil {
		return "", nil, fmt.Errorf("built kernel: %w", err)
	}
	parts := []string{"linux-source " + k.version}
	for _, f := range t.Fragments {
		if f == LeanBase {
			parts = append(parts, "lean base")
		} else {
			parts = append(parts, "fragment "+f)
		}
	}
	return kernel, parts, nil
}

func (builtKernel) headers(ctx context.Context, b *Builder, t *Target) (string, error) {
	k, err := b.kernelBuild(ctx, t)
	if err != nil {
		return "", err
	}
	return k.out, nil
}

// stageBuildTree puts a kernel build tree's boot image and modules into an image
// stage: the image as boot/vmlinuz-REL, the modules listed in modules.order and the
// lists that say what is built in under lib/modules/REL. It returns the image's path.
func stageBuildTree(t *Target, tree, release, stage string) (string, error) {
	img := filepath.Join(tree, "arch", t.ModuleBuild.Arch, "boot", bootImageName(t))
	kernel := filepath.Join(stage, "boot", "vmlinuz-"+release)
	if err := os.MkdirAll(filepath.Dir(kernel), 0o755); err != nil {
		return "", err
	}
	if err := fsutil.CopyFile(img, kernel, 0o644); err != nil {
		return "", err
	}
	mods := filepath.Join(stage, "lib/modules", release)
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if err := fsutil.CopyFile(filepath.Join(tree, f), filepath.Join(mods, f), 0o644); err != nil && !os.IsNotExist(err) {
			return "", err
		}
	}
	order, _ := os.ReadFile(filepath.Join(tree, "modules.order"))
	for _, l := range strings.Fields(string(order)) {
		ko := strings.TrimSuffix(l, ".o") + ".ko"
		if filepath.IsAbs(ko) || strings.Contains(ko, "..") {
			continue
		}
		dst := filepath.Join(mods, "kernel", ko)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := fsutil.CopyFile(filepath.Join(tree, ko), dst, 0o644); err != nil && !os.IsNotExist(err) {
			return "", err
		}
	}
	return kernel, nil
}

// sourcePackage is the Debian source package of a kernel version: 6.12.107-1 is
// linux-source-6.12.
func sourcePackage(version string) (string, error) {
	m := regexp.MustCompile(`^(\d+\.\d+)[.\-~+]`).FindStringSubmatch(version + "-")
	if m == nil {
		return "", fmt.Errorf("kernel version %q: no major.minor", version)
	}
	return "linux-source-" + m[1], nil
}

// kernelBuild returns the built kernel of t, building it first when the cache does
// not have it. The caller holds b.mu.
func (b *Builder) kernelBuild(ctx context.Context, t *Target) (*built, error) {
	if k, ok := b.kernels[t.Name]; ok {
		t.builtKey = k.key
		return k, nil
	}
	k, in, root, err := b.kernelPlan(ctx, t)
	if err != nil {
		return nil, err
	}
	if !k.complete() {
		unlock, err := lockFile(ctx, filepath.Join(b.CacheDir, "kernels", "build.lock"))
		if err != nil {
			return nil, err
		}
		defer unlock()
		if !k.complete() { // another process may have built it meanwhile
			if err := b.buildKernel(ctx, t, root, k, in); err != nil {
				return nil, fmt.Errorf("build kernel %s: %w", t.Name, err)
			}
		}
	}
	rel, err := os.ReadFile(filepath.Join(k.out, "include/config/kernel.release"))
	if err != nil {
		return nil, err
	}
	k.release = strings.TrimSpace(string(rel))
	k.key = in.key
	t.builtKey = in.key
	if b.kernels == nil {
		b.kernels = map[string]*built{}
	}
	b.kernels[t.Name] = k
	return k, nil
}

// KernelBuilt reports whether the cache already holds t's built kernel (false for a
// target that is not a built line), so a caller can tell a use from a long build.
func (b *Builder) KernelBuilt(ctx context.Context, t *Target) (bool, error) {
	if _, ok := t.source().(builtKernel); !ok {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k, _, _, err := b.kernelPlan(ctx, t)
	if err != nil {
		return false, err
	}
	return k.complete(), nil
}

// kernelPlan works out where t's built kernel lives and what it is built from,
// fetching the line's Debian headers for the base config. The caller holds b.mu.
func (b *Builder) kernelPlan(ctx context.Context, t *Target) (*built, *kernelInputs, *debian.Root, error) {
	deb := debianLine(t)
	if err := (debianKernel{}).resolve(ctx, b, deb); err != nil {
		return nil, nil, nil, err
	}
	baseConfig, err := baseConfigOf(ctx, b, t, deb)
	if err != nil {
		return nil, nil, nil, err
	}
	pkg, err := sourcePackage(deb.Kernel.Version)
	if err != nil {
		return nil, nil, nil, err
	}
	root, err := b.rootFor(ctx, t.Suite)
	if err != nil {
		return nil, nil, nil, err
	}
	version, err := root.ShowField(ctx, pkg+":all", "Version")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kernel source for %s: %w", t.Name, err)
	}
	in, err := buildInputs(t, baseConfig, pkg, version, b.JobFragments)
	if err != nil {
		return nil, nil, nil, err
	}
	// Sources are shared by every build of one version; all build trees sit at the same
	// depth, so ccache (with its base directory at kernels/) hits across fragments.
	k := &built{dir: filepath.Join(b.CacheDir, "kernels", t.Name+"-"+in.key[:16]), version: version,
		src: filepath.Join(b.CacheDir, "kernels", "src", pkg+"_"+version)}
	k.out = filepath.Join(k.dir, "build")
	return k, in, root, nil
}

// baseConfigOf is what t's build starts from: the lean base of its architecture, or
// the .config of its Debian line's headers.
func baseConfigOf(ctx context.Context, b *Builder, t, deb *Target) ([]byte, error) {
	if lean(t) {
		return leanBase(t.ModuleBuild.Arch)
	}
	hdr, err := (debianKernel{}).headers(ctx, b, deb)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(hdr, ".config"))
	if err != nil {
		return nil, fmt.Errorf("base config of %s: %w", deb.Name, err)
	}
	return data, nil
}

// kernelInputs is everything a built kernel depends on.
type kernelInputs struct {
	pkg, version string
	base         []byte
	lean         bool   // base is a fragment over allnoconfig (LeanBase)
	leanScript   []byte // kconfig/lean-base.sh, which makes the base config of a lean line
	lsmod        []byte
	fragments    map[string][]byte // name -> text
	order        []string          // merge order: the lab's, the target's, the job's
	script       []byte
	compiler     string
	key          string
}

func buildInputs(t *Target, base []byte, pkg, version string, job []JobFragment) (*kernelInputs, error) {
	in := &kernelInputs{pkg: pkg, version: version, base: base, fragments: map[string][]byte{}}
	var err error
	if in.script, err = kconfigFS.ReadFile("kconfig/build-kernel.sh"); err != nil {
		return nil, err
	}
	if in.lean = lean(t); in.lean {
		if in.leanScript, err = kconfigFS.ReadFile("kconfig/lean-base.sh"); err != nil {
			return nil, err
		}
	}
	names := []string{labFragment}
	for _, f := range t.Fragments {
		if f != LeanBase { // the base, not a fragment
			names = append(names, f)
		}
	}
	for _, n := range names {
		data, err := Fragment(n)
		if err != nil {
			return nil, fmt.Errorf("fragment %s: %w", n, err)
		}
		in.fragments[n] = data
	}
	for _, f := range job {
		n := "job-" + f.Name
		if _, dup := in.fragments[n]; dup {
			return nil, fmt.Errorf("job fragment %s given twice", f.Name)
		}
		names = append(names, n)
		in.fragments[n] = f.Data
	}
	in.order = names
	var lsmod strings.Builder
	lsmod.WriteString("Module Size Used by\n")
	for _, m := range append(append([]string(nil), t.Modules...), keepModules...) {
		fmt.Fprintf(&lsmod, "%s 1 0\n", m)
	}
	in.lsmod = []byte(lsmod.String())
	cc := t.ModuleBuild.CrossCompile + "gcc"
	out, err := exec.Command(cc, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w (install %s)", cc, err, t.ModuleBuild.CrossPackage)
	}
	in.compiler = strings.SplitN(string(out), "\n", 2)[0]
	h := sha256.New()
	fmt.Fprintf(h, "kmodlab-kernel-v1\n%s %s\n%s\n%s\n", pkg, version, in.compiler, t.ModuleBuild.Arch)
	if in.lean {
		// Only lean lines hash the lean step, so the keys of the others stay as they were.
		fmt.Fprintf(h, "lean base %d\n", len(in.leanScript))
		h.Write(in.leanScript)
	}
	for _, part := range [][]byte{base, in.lsmod, in.script} {
		fmt.Fprintf(h, "%d\n", len(part))
		h.Write(part)
	}
	for _, n := range names {
		fmt.Fprintf(h, "fragment %s %d\n", n, len(in.fragments[n]))
		h.Write(in.fragments[n])
	}
	in.key = hex.EncodeToString(h.Sum(nil))
	return in, nil
}

// BuiltKernel is a kernel the cache holds, for listings.
type BuiltKernel struct {
	Dir     string // cache/kernels/NAME-KEY
	Target  string // TARGET[@LINE]+FRAGMENTS
	Release string
	Config  string // the final .config
}

// BuiltKernels lists the complete built kernels in the cache, by target name.
func (b *Builder) BuiltKernels() ([]BuiltKernel, error) {
	dirs, err := filepath.Glob(filepath.Join(b.CacheDir, "kernels", "*"))
	if err != nil {
		return nil, err
	}
	var out []BuiltKernel
	for _, d := range dirs {
		k := built{dir: d}
		if !k.complete() {
			continue
		}
		rel, _ := os.ReadFile(filepath.Join(d, "build/include/config/kernel.release"))
		name := filepath.Base(d)
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i]
		}
		out = append(out, BuiltKernel{Dir: d, Target: name, Release: strings.TrimSpace(string(rel)), Config: filepath.Join(d, "config")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}
