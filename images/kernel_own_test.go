package images

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBuild writes the files of a finished ARM kernel build.
func fakeBuild(t *testing.T) string {
	dir := t.TempDir()
	for f, data := range map[string]string{
		".config":                       "CONFIG_ARM_LPAE=y\n",
		"Module.symvers":                "0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n",
		"include/config/kernel.release": "6.13.0-mine\n",
		"arch/arm/boot/zImage":          "zimage",
		"modules.order":                 "drivers/block/loop.o\n",
		"modules.builtin":               "kernel/drivers/block/virtio_blk.ko\n",
		"drivers/block/loop.ko":         "\x7fELF",
	} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOwnKernel(t *testing.T) {
	dir := fakeBuild(t)
	tg := lookup(t, "armv7-lpae+own")
	if _, ok := tg.source().(ownKernel); !ok {
		t.Fatalf("source %T", tg.source())
	}
	b := &Builder{CacheDir: t.TempDir()}
	if err := b.resolve(context.Background(), tg); err == nil || !strings.Contains(err.Error(), "own_kernels.armv7-lpae") {
		t.Errorf("no directory given: %v", err)
	}
	b.OwnKernels = map[string]string{"armv7-lpae": dir}
	if err := b.resolve(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	if tg.Kernel.Release != "6.13.0-mine" || tg.builtKey == "" {
		t.Errorf("kernel %+v key %q", tg.Kernel, tg.builtKey)
	}
	key := tg.builtKey
	stage := t.TempDir()
	kernel, _, err := tg.source().stage(context.Background(), b, tg, stage)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(kernel); string(data) != "zimage" || filepath.Base(kernel) != "vmlinuz-6.13.0-mine" {
		t.Errorf("boot image %s %q", kernel, data)
	}
	if _, err := os.Stat(filepath.Join(stage, "lib/modules/6.13.0-mine/kernel/drivers/block/loop.ko")); err != nil {
		t.Errorf("modules.order's module not staged: %v", err)
	}
	if !Builtin(filepath.Join(stage, "lib/modules/6.13.0-mine"))["virtio_blk"] {
		t.Errorf("modules.builtin not staged")
	}
	if h, err := tg.source().headers(context.Background(), b, tg); err != nil || h != dir {
		t.Errorf("modules build against the build itself: %s %v", h, err)
	}
	// A rebuilt .config is another kernel.
	os.WriteFile(filepath.Join(dir, ".config"), []byte("CONFIG_ARM_LPAE=y\nCONFIG_KASAN=y\n"), 0o644)
	tg2, _ := Lookup("armv7-lpae+own")
	if err := b.resolve(context.Background(), tg2); err != nil || tg2.builtKey == key {
		t.Errorf("a changed .config kept the key: %v", err)
	}
	os.Remove(filepath.Join(dir, "Module.symvers"))
	if err := CheckOwnKernel(tg, dir); err == nil || !strings.Contains(err.Error(), "no Module.symvers") {
		t.Errorf("missing Module.symvers: %v", err)
	}
	if _, err := Lookup("armv7-lpae+detect+own"); err == nil {
		t.Errorf("+own beside fragments was accepted")
	}
}
