// Package images holds the guest targets kmodlab can boot (one recipe file per target
// under recipes/) and the builder that turns a recipe into a bootable kernel + initramfs
// and a kernel-headers tree for module builds, cached by the recipe's content hash.
package images

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/kmodlab/kmodlab/daemon/daemoncpu"
	"gopkg.in/yaml.v3"
)

//go:embed recipes/*.yaml init.sh
var recipeFS embed.FS

// Target is one guest recipe: which Debian packages make its kernel and userland, and how
// QEMU runs it. Versions are pinned here and nowhere else.
type Target struct {
	// Name is the target's name; a non-default kernel line is part of it
	// ("armv7-lpae@trixie"), so reports and caches keep lines apart.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	DebArch     string `yaml:"deb_arch"`
	// Multiarch is Debian's multiarch tuple of DebArch (aarch64-linux-gnu): the
	// userland's libraries live in /lib/TUPLE and /usr/lib/TUPLE (LibDirs).
	Multiarch   string   `yaml:"multiarch"`
	GOARCH      string   `yaml:"goarch"`
	GOARM       string   `yaml:"goarm,omitempty"`
	Kernel      Kernel   `yaml:"kernel"`
	Userland    []string `yaml:"userland"`
	Modules     []string `yaml:"modules"`
	ModuleBuild ModBuild `yaml:"module_build"`
	QEMU        QEMU     `yaml:"qemu"`
	Expect      MustShow `yaml:"expect"`
	// Line is the Debian kernel line of Kernel (default bookworm); Lines are the other
	// lines this target can boot, selected as TARGET@LINE.
	Line      string          `yaml:"line"`
	Lines     map[string]Line `yaml:"lines"`
	LinesNote string          `yaml:"lines_note"` // why a line is missing, for the error

	Base  string `yaml:"-"` // the target's name without @LINE
	Suite string `yaml:"-"` // the Debian suite the kernel comes from
	// KbuildLibs are host-architecture libraries of the line's suite that its kbuild
	// tools need (a newer glibc than the host's); the tools are run through them.
	KbuildLibs []string `yaml:"-"`
	// Fragments, when set, make the kernel one the lab builds from the line's Debian
	// sources with these config fragments (images/kconfig/NAME.config), named
	// TARGET[@LINE]+FRAGMENT... (kernel_built.go).
	Fragments []string `yaml:"-"`
	builtKey  string   // the built kernel's cache key, set when it is resolved
	raw       []byte   // the recipe file as read, part of the cache key
	file      string   // where it came from, for error messages
}

// Line is one more kernel line of a target: another Debian suite's kernel, with the
// same QEMU settings and the same (default line's) boot userland.
type Line struct {
	Suite      string   `yaml:"suite"` // default: the line's name
	Kernel     Kernel   `yaml:"kernel"`
	KbuildLibs []string `yaml:"kbuild_libs"`
	Modules    []string `yaml:"modules"` // replaces the target's modules when set
}

// DefaultLine is the kernel line of a target named without @LINE.
const DefaultLine = "bookworm"

// Kernel pins the kernel image and the packages a module build needs.
type Kernel struct {
	// Resolve names a kernel flavour (armmp-lpae, amd64) whose newest kernel the suite
	// serves is taken at build time (sid): Release, Version, Image, Headers and Kbuild
	// are then filled by Builder.Resolve and recorded in the image manifest.
	Resolve string `yaml:"resolve"`
	Release string `yaml:"release"` // uname -r, e.g. 6.1.0-50-armmp-lpae
	Version string `yaml:"version"` // Debian package version, e.g. 6.1.176-1
	Image   string `yaml:"image"`   // linux-image package
	// Parts are packages the image package is split into (sid: linux-binary-*,
	// linux-modules-*), installed with it at the same version.
	Parts   []string `yaml:"parts"`
	Headers []string `yaml:"headers"` // linux-headers packages ("name" = target arch, "name:all")
	Kbuild  string   `yaml:"kbuild"`  // linux-kbuild package, installed for the host's arch
}

// ModBuild says how kbuild is invoked for this target from an x86_64 host.
type ModBuild struct {
	Arch         string `yaml:"arch"`          // ARCH= for kbuild (arm, x86)
	CrossCompile string `yaml:"cross_compile"` // CROSS_COMPILE= prefix, empty for the host gcc
	CrossPackage string `yaml:"cross_package"` // Debian package that provides the compiler
}

// QEMU says how the guest is started.
type QEMU struct {
	Binary   string `yaml:"binary"`
	Package  string `yaml:"package"`
	Machine  string `yaml:"machine"`
	CPU      string `yaml:"cpu"`
	CPUKVM   string `yaml:"cpu_kvm"`
	SMP      int    `yaml:"smp"`
	MemoryMB int    `yaml:"memory_mb"`
	Console  string `yaml:"console"`
	// Append is the recipe's own kernel parameters; isolcpus= is not one of them, it is
	// derived from the CPUs (Cmdline).
	Append    string   `yaml:"append"`
	NetDevice string   `yaml:"net_device"`
	KVM       bool     `yaml:"kvm"` // the guest ISA can run under KVM on an x86_64 host
	Devices   []string `yaml:"devices"`
	// KernelFormat (required) is how the kernel boots (kernel_format.go). "bzimage",
	// "zimage": the packaged image as it is. "vmlinux": boot the uncompressed ELF through
	// its PVH entry instead of the bzImage, skipping the XZ decompression that costs ~2 s
	// under TCG.
	// "arm-image": boot the uncompressed ARM Image, placed at KernelAddr by QEMU's
	// generic loader and entered through a two-word stub given as -kernel (so QEMU
	// still passes the device tree, the initramfs and the command line), instead of
	// the zImage, which decompresses itself for ~1.5 s under TCG. "arm64-image": the
	// arm64 Image Debian ships uncompressed, booted as it is (checked when built).
	KernelFormat string `yaml:"kernel_format"`
	// KernelAddr is where an arm-image kernel is loaded: a 2 MiB-aligned physical
	// base (which becomes the kernel's PHYS_OFFSET) plus the 0x8000 TEXT_OFFSET.
	KernelAddr uint64 `yaml:"kernel_addr"`
}

// Cmdline is the recipe's part of the kernel command line on smp CPUs: its append: and
// the daemon's CPU isolated (daemon/daemoncpu's rule).
func (q QEMU) Cmdline(smp int) string {
	return strings.TrimSpace(q.Append + " " + daemoncpu.Isolcpus(smp))
}

// MustShow is what a booted guest of this target must show (checked by the e2e tests).
type MustShow struct {
	UnameM         string `yaml:"uname_m"`
	HighTotalMinKB int64  `yaml:"high_total_min_kb"`
}

// Hash is the content hash of the recipe, the init script and the builder's format version.
func (t *Target) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "kmodlab-image-v%d\n", builderVersion)
	h.Write(t.raw)
	if t.Line != "" && t.Line != DefaultLine {
		fmt.Fprintf(h, "\nline %s %s %+v\n", t.Line, t.Suite, t.Kernel)
	}
	if k := t.source().key(t); k != "" {
		fmt.Fprintf(h, "\nkernel %s %+v\n", k, t.Kernel)
	}
	init, _ := recipeFS.ReadFile("init.sh")
	h.Write(init)
	return hex.EncodeToString(h.Sum(nil))
}

// File is the recipe's path inside the repository.
func (t *Target) File() string { return t.file }

// ParseTarget reads one recipe and checks it; errors name the file and field.
func ParseTarget(file string, data []byte) (*Target, error) {
	var t Target
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	t.raw = data
	t.file = file
	t.Base = t.Name
	if t.Line == "" {
		t.Line = DefaultLine
	}
	t.Suite = t.Line
	check := func(ok bool, field, problem string) error {
		if ok {
			return nil
		}
		return fmt.Errorf("%s: %s: %s", file, field, problem)
	}
	for _, err := range []error{
		check(t.Name != "", "name", "missing"),
		check(debArchRe.MatchString(t.DebArch), "deb_arch", "missing or not a Debian architecture name (arm64, armhf, amd64)"),
		check(multiarchRe.MatchString(t.Multiarch), "multiarch", "missing or not a multiarch tuple (aarch64-linux-gnu)"),
		check(t.ModuleBuild.CrossCompile == "" || t.ModuleBuild.CrossCompile == t.Multiarch+"-",
			"module_build.cross_compile", fmt.Sprintf("a cross compiler for %s is %s-", t.Multiarch, t.Multiarch)),
		check(t.ModuleBuild.CrossPackage != "", "module_build.cross_package", "missing (the Debian package of the compiler)"),
		check(t.QEMU.Package != "", "qemu.package", "missing (the Debian package of qemu.binary)"),
		check(t.GOARCH != "", "goarch", "missing"),
		check(t.Kernel.Release != "", "kernel.release", "missing"),
		check(t.Kernel.Version != "", "kernel.version", "missing"),
		check(t.Kernel.Image != "", "kernel.image", "missing"),
		check(t.Kernel.Kbuild != "", "kernel.kbuild", "missing"),
		check(t.QEMU.Binary != "", "qemu.binary", "missing"),
		check(t.QEMU.MemoryMB > 0, "qemu.memory_mb", "must be > 0"),
		check(t.QEMU.SMP > 0, "qemu.smp", "must be > 0"),
		check(t.QEMU.Console != "", "qemu.console", "missing"),
		check(t.QEMU.NetDevice != "", "qemu.net_device", "missing"),
		check(t.ModuleBuild.Arch != "", "module_build.arch", "missing"),
		check(t.QEMU.KernelFormat != "arm-image" || (t.QEMU.KernelAddr&0x1fffff == 0x8000 && t.QEMU.KernelAddr <= 0xffffffff),
			"qemu.kernel_addr", "an arm-image needs a 2 MiB-aligned base + 0x8000 below 4 GiB, e.g. 0x40208000"),
	} {
		if err != nil {
			return nil, err
		}
	}
	for _, f := range strings.Fields(t.QEMU.Append) {
		if k, _, _ := strings.Cut(f, "="); k == "isolcpus" {
			return nil, fmt.Errorf("%s: qemu.append: %q: isolcpus= is derived from qemu.smp (the daemon's CPU, the last: %s); drop it", file, f, daemoncpu.Isolcpus(t.QEMU.SMP))
		}
	}
	if _, err := t.format(); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(t.Kernel.Image, "linux-image-") {
		return nil, fmt.Errorf("%s: kernel.image: %q is not a linux-image package", file, t.Kernel.Image)
	}
	for name, l := range t.Lines {
		if !lineRe.MatchString(name) || name == t.Line {
			return nil, fmt.Errorf("%s: lines.%s: a line is a Debian suite's name, other than the default %s", file, name, t.Line)
		}
		k := l.Kernel
		if k.Resolve == "" && (k.Release == "" || k.Version == "" || k.Kbuild == "" || !strings.HasPrefix(k.Image, "linux-image-")) {
			return nil, fmt.Errorf("%s: lines.%s.kernel: needs release, version, image and kbuild (or resolve: FLAVOUR)", file, name)
		}
	}
	return &t, nil
}

var (
	lineRe      = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	debArchRe   = regexp.MustCompile(`^[a-z0-9]+$`)
	multiarchRe = regexp.MustCompile(`^[a-z0-9_]+-linux-gnu[a-z0-9]*$`)
)

// LibDirs are where the guest's dynamic loader looks for libraries, in its order.
func (t *Target) LibDirs() []string {
	return []string{"/lib/" + t.Multiarch, "/usr/lib/" + t.Multiarch, "/lib", "/usr/lib"}
}

// DebArchs are the Debian architectures of the host and of every built-in target, the
// package lists the private apt roots fetch.
func DebArchs() ([]string, error) {
	ts, err := Targets()
	if err != nil {
		return nil, err
	}
	archs := []string{hostDebArch()}
	for _, t := range ts {
		archs = append(archs, t.DebArch)
	}
	return sortedUnique(archs), nil
}

// ParseRef splits "TARGET@LINE"; line is "" when no line is named. Fragments of a
// built kernel ("+detect") are not part of it: see SplitFragments.
func ParseRef(ref string) (target, line string, err error) {
	target, line, found := strings.Cut(ref, "@")
	if target == "" || (found && !lineRe.MatchString(line)) {
		return "", "", fmt.Errorf("%q: want TARGET or TARGET@LINE (e.g. armv7-lpae@trixie)", ref)
	}
	return target, line, nil
}

// SplitFragments splits "TARGET[@LINE]+FRAG+FRAG" into the reference and the fragment
// names, which must be known (Fragments()), sorted and given once, so one kernel has
// one name.
func SplitFragments(ref string) (string, []string, error) {
	parts := strings.Split(ref, "+")
	frags := parts[1:]
	known := map[string]bool{}
	for _, f := range FragmentNames() {
		known[f] = true
	}
	known[OwnSuffix] = true
	for i, f := range frags {
		switch {
		case f == OwnSuffix && len(frags) > 1:
			return "", nil, fmt.Errorf("%q: +%s is a kernel of its own: no fragments beside it", ref, OwnSuffix)
		case !known[f]:
			return "", nil, fmt.Errorf("%q: no kernel config fragment %q (known: %s)", ref, f, strings.Join(FragmentNames(), ", "))
		case i > 0 && frags[i-1] >= f:
			return "", nil, fmt.Errorf("%q: name fragments once each, in sorted order (%s)", ref, strings.Join(sortedUnique(frags), "+"))
		}
	}
	return parts[0], frags, nil
}

func sortedUnique(s []string) []string {
	m := map[string]bool{}
	var out []string
	for _, v := range s {
		if !m[v] {
			m[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// WithFragments returns the target with a kernel built from its line's sources and
// these fragments (none: t itself).
func (t *Target) WithFragments(frags []string) *Target {
	if len(frags) == 0 {
		return t
	}
	c := *t
	c.Name = t.Name + "+" + strings.Join(frags, "+")
	c.Fragments = frags
	return &c
}

// WithLine returns the target on another kernel line ("" or the default: t itself).
func (t *Target) WithLine(line string) (*Target, error) {
	if line == "" || line == t.Line {
		return t, nil
	}
	l, ok := t.Lines[line]
	if !ok {
		known := []string{t.Line}
		for n := range t.Lines {
			known = append(known, n)
		}
		sort.Strings(known[1:])
		msg := fmt.Sprintf("target %s has no kernel line %q (lines: %s)", t.Base, line, strings.Join(known, ", "))
		if t.LinesNote != "" {
			msg += ": " + t.LinesNote
		}
		return nil, errors.New(msg)
	}
	c := *t
	c.Name = t.Base + "@" + line
	c.Line = line
	c.Suite = l.Suite
	if c.Suite == "" {
		c.Suite = line
	}
	c.Kernel = l.Kernel
	c.Kernel.Headers = append([]string(nil), l.Kernel.Headers...)
	c.KbuildLibs = l.KbuildLibs
	if l.Modules != nil {
		c.Modules = l.Modules
	}
	return &c, nil
}

// LineNames lists the target's kernel lines, the default first.
func (t *Target) LineNames() []string {
	var n []string
	for l := range t.Lines {
		n = append(n, l)
	}
	sort.Strings(n)
	return append([]string{t.Line}, n...)
}

// Targets returns every built-in target, sorted by name.
func Targets() ([]*Target, error) {
	entries, err := fs.Glob(recipeFS, "recipes/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*Target
	for _, e := range entries {
		data, err := recipeFS.ReadFile(e)
		if err != nil {
			return nil, err
		}
		t, err := ParseTarget(path.Join("images", e), data)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Names lists the built-in target names.
func Names() []string {
	ts, _ := Targets()
	var n []string
	for _, t := range ts {
		n = append(n, t.Name)
	}
	return n
}

// Lookup finds a built-in target by name, TARGET or TARGET@LINE; the error lists the
// known ones, or the target's lines.
func Lookup(name string) (*Target, error) {
	ref, frags, err := SplitFragments(name)
	if err != nil {
		return nil, err
	}
	base, line, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	ts, err := Targets()
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Name == base {
			lt, err := t.WithLine(line)
			if err != nil {
				return nil, err
			}
			bt := lt.WithFragments(frags)
			if lean(bt) {
				if _, err := leanBase(bt.ModuleBuild.Arch); err != nil {
					return nil, fmt.Errorf("%q: %w", name, err)
				}
			}
			return bt, nil
		}
	}
	return nil, fmt.Errorf("unknown target %q (known: %s)", base, strings.Join(Names(), ", "))
}

// ImagePackages lists the packages of the bootable image, each as name:arch=version
// where the version is pinned, or name:arch for the userland (newest the mirror has).
func (t *Target) ImagePackages() []string {
	return append(t.KernelPackages(), t.UserlandPackages()...)
}

// KernelPackages is the kernel image package, from the line's suite.
func (t *Target) KernelPackages() []string {
	pk := []string{fmt.Sprintf("%s:%s=%s", t.Kernel.Image, t.DebArch, t.Kernel.Version)}
	for _, p := range t.Kernel.Parts {
		pk = append(pk, qualify(p, t.DebArch, t.Kernel.Version))
	}
	return pk
}

// UserlandPackages is the boot userland (busybox, dropbear, …), from the default
// line's suite on every line.
func (t *Target) UserlandPackages() []string {
	var pk []string
	for _, u := range t.Userland {
		pk = append(pk, qualify(u, t.DebArch, ""))
	}
	return pk
}

// HeaderPackages lists the packages a module build for this target needs; kbuild runs
// on the host, so it is taken for hostArch.
func (t *Target) HeaderPackages(hostArch string) []string {
	var pk []string
	for _, h := range t.Kernel.Headers {
		pk = append(pk, qualify(h, t.DebArch, t.Kernel.Version))
	}
	return append(pk, qualify(t.Kernel.Kbuild, hostArch, t.Kernel.Version))
}

func qualify(name, arch, version string) string {
	if !strings.Contains(name, ":") {
		name += ":" + arch
	}
	if version != "" && !strings.Contains(name, "=") {
		name += "=" + version
	}
	return name
}
