// Package images holds the guest targets kmodlab can boot (one recipe file per target
// under recipes/) and the builder that turns a recipe into a bootable kernel + initramfs
// and a kernel-headers tree for module builds, cached by the recipe's content hash.
package images

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed recipes/*.yaml init.sh
var recipeFS embed.FS

// Target is one guest recipe: which Debian packages make its kernel and userland, and how
// QEMU runs it. Versions are pinned here and nowhere else.
type Target struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	DebArch     string   `yaml:"deb_arch"`
	GOARCH      string   `yaml:"goarch"`
	GOARM       string   `yaml:"goarm,omitempty"`
	Kernel      Kernel   `yaml:"kernel"`
	Userland    []string `yaml:"userland"`
	Modules     []string `yaml:"modules"`
	ModuleBuild ModBuild `yaml:"module_build"`
	QEMU        QEMU     `yaml:"qemu"`
	Expect      MustShow `yaml:"expect"`
	raw         []byte   // the recipe file as read, part of the cache key
	file        string   // where it came from, for error messages
}

// Kernel pins the kernel image and the packages a module build needs.
type Kernel struct {
	Release string   `yaml:"release"` // uname -r, e.g. 6.1.0-50-armmp-lpae
	Version string   `yaml:"version"` // Debian package version, e.g. 6.1.176-1
	Image   string   `yaml:"image"`   // linux-image package
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
	Binary    string   `yaml:"binary"`
	Package   string   `yaml:"package"`
	Machine   string   `yaml:"machine"`
	CPU       string   `yaml:"cpu"`
	CPUKVM    string   `yaml:"cpu_kvm"`
	SMP       int      `yaml:"smp"`
	MemoryMB  int      `yaml:"memory_mb"`
	Console   string   `yaml:"console"`
	Append    string   `yaml:"append"`
	NetDevice string   `yaml:"net_device"`
	KVM       bool     `yaml:"kvm"` // the guest ISA can run under KVM on an x86_64 host
	Devices   []string `yaml:"devices"`
	// KernelFormat "vmlinux": boot the uncompressed ELF through its PVH entry instead of
	// the bzImage, skipping the XZ decompression that costs ~2 s under TCG.
	KernelFormat string `yaml:"kernel_format"`
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
	check := func(ok bool, field, problem string) error {
		if ok {
			return nil
		}
		return fmt.Errorf("%s: %s: %s", file, field, problem)
	}
	for _, err := range []error{
		check(t.Name != "", "name", "missing"),
		check(t.DebArch != "", "deb_arch", "missing"),
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
	} {
		if err != nil {
			return nil, err
		}
	}
	if !strings.HasPrefix(t.Kernel.Image, "linux-image-") {
		return nil, fmt.Errorf("%s: kernel.image: %q is not a linux-image package", file, t.Kernel.Image)
	}
	return &t, nil
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

// Lookup finds a built-in target by name; the error lists the known ones.
func Lookup(name string) (*Target, error) {
	ts, err := Targets()
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, fmt.Errorf("unknown target %q (known: %s)", name, strings.Join(Names(), ", "))
}

// ImagePackages lists the packages of the bootable image, each as name:arch=version
// where the version is pinned, or name:arch for the userland (newest the mirror has).
func (t *Target) ImagePackages() []string {
	pk := []string{fmt.Sprintf("%s:%s=%s", t.Kernel.Image, t.DebArch, t.Kernel.Version)}
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
