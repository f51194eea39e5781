package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kmodlab/kmodlab/images/debian"
)

// debianKernel is a kernel from Debian's binary packages: the recipe's pinned kernel,
// a line's, or the newest of a flavour (resolve: FLAVOUR).
type debianKernel struct{}

func (debianKernel) key(t *Target) string { return "" }

// kernelDebs downloads t's kernel packages from its line's suite.
func (b *Builder) kernelDebs(ctx context.Context, t *Target) ([]string, error) {
	root, err := b.rootFor(ctx, t.Suite)
	if err != nil {
		return nil, err
	}
	return root.Download(ctx, t.KernelPackages())
}

// stage unpacks the kernel packages of the line's suite.
func (debianKernel) stage(ctx context.Context, b *Builder, t *Target, stage string) (string, []string, error) {
	debs, err := b.kernelDebs(ctx, t)
	if err != nil {
		return "", nil, err
	}
	var parts []string
	for _, d := range debs {
		if err := debian.Extract(ctx, d, stage); err != nil {
			return "", nil, err
		}
		parts = append(parts, filepath.Base(d))
	}
	kernel := filepath.Join(stage, "boot", "vmlinuz-"+t.Kernel.Release)
	if _, err := os.Stat(kernel); err != nil {
		// Newer packaging (sid) keeps the image with its modules.
		kernel = filepath.Join(stage, "usr/lib/modules", t.Kernel.Release, "vmlinuz")
	}
	return kernel, parts, nil
}

// resolve takes the newest kernel of a flavour the suite serves (sid), once per Builder.
func (debianKernel) resolve(ctx context.Context, b *Builder, t *Target) error {
	if t.Kernel.Resolve == "" || t.Kernel.Release != "" {
		return nil
	}
	if k, ok := b.resolved[t.Name]; ok {
		t.Kernel = k
		return nil
	}
	root, err := b.rootFor(ctx, t.Suite)
	if err != nil {
		return err
	}
	flavour := t.Kernel.Resolve
	meta := "linux-image-" + flavour + ":" + t.DebArch
	dep, err := root.ShowField(ctx, meta, "Depends")
	if err != nil {
		return fmt.Errorf("%s: resolve the newest %s kernel: %w", t.Name, flavour, err)
	}
	k, err := kernelFromDepends(flavour, dep)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", t.Name, meta, err)
	}
	// Newer packaging splits the image package: the kernel and its modules are in
	// linux-binary-REL and linux-modules-REL, which it depends on at the same version.
	deps, err := root.ShowField(ctx, k.Image+":"+t.DebArch, "Depends")
	if err != nil {
		return fmt.Errorf("%s: %w", t.Name, err)
	}
	k.Parts = kernelParts(k, deps)
	if b.resolved == nil {
		b.resolved = map[string]Kernel{}
	}
	b.resolved[t.Name] = k
	t.Kernel = k
	b.log().Info("kernel line resolved", "target", t.Name, "release", k.Release, "version", k.Version)
	return nil
}

// kernelParts picks the split-out kernel packages (same release, same version) from the
// image package's Depends.
func kernelParts(k Kernel, depends string) []string {
	var parts []string
	for _, d := range strings.Split(depends, ",") {
		alt, _, _ := strings.Cut(strings.TrimSpace(d), "|")
		name, ver, _ := strings.Cut(strings.TrimSpace(alt), " ")
		if !strings.HasSuffix(name, "-"+k.Release) || !strings.Contains(ver, k.Version) {
			continue
		}
		if strings.HasPrefix(name, "linux-binary-") || strings.HasPrefix(name, "linux-modules-") || strings.HasPrefix(name, "linux-base-") {
			parts = append(parts, name)
		}
	}
	return parts
}

// kernelFromDepends reads the versioned kernel out of a linux-image-FLAVOUR
// metapackage's Depends ("linux-image-7.2.13+deb14-armmp-lpae (= 7.2.13-1)").
func kernelFromDepends(flavour, depends string) (Kernel, error) {
	for _, d := range strings.Split(depends, ",") {
		d = strings.TrimSpace(d)
		name, ver, _ := strings.Cut(d, " ")
		if !strings.HasPrefix(name, "linux-image-") || !strings.HasSuffix(name, "-"+flavour) {
			continue
		}
		ver = strings.TrimSpace(strings.Trim(strings.TrimSpace(ver), "()"))
		ver = strings.TrimSpace(strings.TrimPrefix(ver, "="))
		rel := strings.TrimPrefix(name, "linux-image-")
		abi := strings.TrimSuffix(rel, "-"+flavour)
		if ver == "" || abi == rel || abi == "" {
			continue
		}
		return Kernel{Resolve: flavour, Release: rel, Version: ver, Image: name,
			Headers: []string{"linux-headers-" + rel, "linux-headers-" + abi + "-common:all"},
			Kbuild:  "linux-kbuild-" + abi}, nil
	}
	return Kernel{}, fmt.Errorf("no versioned linux-image-*-%s in Depends: %s", flavour, depends)
}

// debianHeadersDir is where headers keeps t's headers tree, by its packages.
func debianHeadersDir(b *Builder, t *Target) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("headers-v6\n%s\n%s\n%s\n%s", t.Kernel.Release, t.Kernel.Version,
		strings.Join(t.HeaderPackages(hostDebArch()), "\n"), strings.Join(t.KbuildLibs, ","))))
	return filepath.Join(b.CacheDir, "headers", t.Name+"-"+hex.EncodeToString(h[:8]))
}

// headers fetches the kernel's headers and kbuild packages on first use and fixes
// them up: the Makefile's absolute include and absolute symlinks are made relative so
// the tree works from the cache.
func (debianKernel) headers(ctx context.Context, b *Builder, t *Target) (string, error) {
	dir := debianHeadersDir(b, t)
	build := filepath.Join(dir, "usr/src", "linux-headers-"+t.Kernel.Release)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return build, nil
	}
	root, err := b.rootFor(ctx, t.Suite)
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
	// Newer headers (sid) also name their own absolute directory as the output tree.
	fixed = regexp.MustCompile(`(?m)^KBUILD_OUTPUT\s*:?=\s*/usr/src/\S+$`).ReplaceAllString(fixed,
		"KBUILD_OUTPUT:=$(abspath $(dir $(lastword $(MAKEFILE_LIST))))")
	if err := os.WriteFile(mk, []byte(fixed), 0o644); err != nil {
		return "", err
	}
	if err := fixCompiler(dir, build, t.ModuleBuild.CrossCompile, t.ModuleBuild.CrossPackage); err != nil {
		return "", err
	}
	if len(t.KbuildLibs) > 0 {
		if err := wrapKbuildTools(ctx, root, dir, t.KbuildLibs); err != nil {
			return "", fmt.Errorf("headers for %s: %w", t.Name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	return build, nil
}
