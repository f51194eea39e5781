package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// OwnSuffix names a target booted with the user's own kernel build: TARGET+own, with
// the build directory from Builder.OwnKernels (a job's own_kernels:, or kmodlab boot
// --own-kernel).
const OwnSuffix = "own"

// ownKernel is a kernel the user built: a kbuild output directory with .config,
// Module.symvers, include/config/kernel.release and the boot image
// (arch/ARCH/boot/zImage, bzImage or Image: the recipe's kernel format says which). Modules build against it; its modules.order
// modules go into the image.
type ownKernel struct{}

// ownDir is the user's build directory for t.
func (b *Builder) ownDir(t *Target) (string, error) {
	dir := b.OwnKernels[t.Base]
	if dir == "" {
		return "", fmt.Errorf("%s: no kernel build directory for %s (a job's own_kernels.%s, or --own-kernel)", t.Name, t.Base, t.Base)
	}
	return dir, nil
}

// CheckOwnKernel checks that dir is a kernel build tree a target can boot and build
// modules against; the error names what is missing.
func CheckOwnKernel(t *Target, dir string) error {
	for _, f := range []string{".config", "Module.symvers", "include/config/kernel.release",
		filepath.Join("arch", t.ModuleBuild.Arch, "boot", bootImageName(t))} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("%s is not a finished %s kernel build: no %s (build with make %s modules)", dir, t.ModuleBuild.Arch, f, bootImageName(t))
		}
	}
	return nil
}

func (ownKernel) key(t *Target) string { return "own " + t.builtKey }

// resolve reads the build's release and fingerprints it: its .config, Module.symvers
// and the boot image's size and time.
func (ownKernel) resolve(ctx context.Context, b *Builder, t *Target) error {
	dir, err := b.ownDir(t)
	if err != nil {
		return err
	}
	if err := CheckOwnKernel(t, dir); err != nil {
		return err
	}
	rel, err := os.ReadFile(filepath.Join(dir, "include/config/kernel.release"))
	if err != nil {
		return err
	}
	h := sha256.New()
	for _, f := range []string{".config", "Module.symvers"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	img, err := os.Stat(filepath.Join(dir, "arch", t.ModuleBuild.Arch, "boot", bootImageName(t)))
	if err != nil {
		return err
	}
	fmt.Fprintf(h, "image %d %d\n", img.Size(), img.ModTime().UnixNano())
	t.builtKey = hex.EncodeToString(h.Sum(nil))
	release := strings.TrimSpace(string(rel))
	t.Kernel = Kernel{Release: release, Version: "own build", Image: "(own build in " + dir + ")"}
	return nil
}

func (ownKernel) stage(ctx context.Context, b *Builder, t *Target, stage string) (string, []string, error) {
	dir, err := b.ownDir(t)
	if err != nil {
		return "", nil, err
	}
	kernel, err := stageBuildTree(t, dir, t.Kernel.Release, stage)
	if err != nil {
		return "", nil, fmt.Errorf("own kernel: %w", err)
	}
	return kernel, []string{"own build " + dir}, nil
}

func (ownKernel) headers(ctx context.Context, b *Builder, t *Target) (string, error) {
	return b.ownDir(t)
}
