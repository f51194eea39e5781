package images

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmodlab/kmodlab/internal/fsutil"
)

// NaiveBoot returns the files of the naive way to boot img, for the boot benchmark's
// baseline: the kernel exactly as Debian packages it (the self-decompressing vmlinuz)
// and the image's initramfs gzip-compressed. They are cached next to the images.
func (b *Builder) NaiveBoot(ctx context.Context, img *Image) (kernel, initrd string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	dir := filepath.Join(b.CacheDir, "baseline", filepath.Base(img.Dir))
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio.gz")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return kernel, initrd, nil
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	t := img.Target
	if strings.HasSuffix(img.Kernel, "vmlinuz") {
		err = fsutil.CopyFile(img.Kernel, kernel, 0o644)
	} else {
		err = b.packagedKernel(ctx, t, kernel)
	}
	if err != nil {
		return "", "", fmt.Errorf("baseline kernel for %s: %w", t.Name, err)
	}
	if err := gzipFile(img.Initrd, initrd); err != nil {
		return "", "", err
	}
	return kernel, initrd, os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644)
}

// packagedKernel copies /boot/vmlinuz-<release> out of the target's kernel package.
func (b *Builder) packagedKernel(ctx context.Context, t *Target, dst string) error {
	root, err := b.root(ctx)
	if err != nil {
		return err
	}
	stage, err := b.fetch(ctx, root, t.Name+"-naive-", t.KernelPackages()[:1])
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	return fsutil.CopyFile(filepath.Join(stage, "boot", "vmlinuz-"+t.Kernel.Release), dst, 0o644)
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	return fsutil.CloseAfter(out, err)
}
