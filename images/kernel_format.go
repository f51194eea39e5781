package images

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kmodlab/kmodlab/internal/fsutil"
)

// A kernelFormat is how a target's kernel is booted under QEMU (the recipe's
// qemu.kernel_format): the file the image holds, how it is made from the kernel
// package's compressed image, and what QEMU's command line gets. This is the one place
// that knows the formats.
type kernelFormat struct {
	file string // in the image directory
	// make writes the file from the compressed boot image.
	make func(ctx context.Context, compressed, dst string) error
	stub bool // -kernel is ArmBootStub, the kernel goes in by the generic loader
	// kbuild is the boot image a kernel build makes (arch/ARCH/boot/NAME), the file
	// Debian packages as /boot/vmlinuz: what make builds for a built or own kernel.
	kbuild string
}

var kernelFormats = map[string]kernelFormat{
	// The compressed image as it is: QEMU's -kernel boots bzImage and zImage.
	"bzimage": {file: "vmlinuz", make: copyKernel, kbuild: "bzImage"},
	"zimage":  {file: "vmlinuz", make: copyKernel, kbuild: "zImage"},
	// The uncompressed ELF through its PVH entry: no XZ decompression under TCG.
	"vmlinux": {file: "vmlinux", make: ExtractVmlinux, kbuild: "bzImage"},
	// The uncompressed ARM Image at kernel_addr, entered through a stub.
	"arm-image": {file: "Image", make: ExtractArmImage, stub: true, kbuild: "zImage"},
	// The arm64 Image as Debian ships it (uncompressed): QEMU's -kernel boots it, and
	// places it itself.
	"arm64-image": {file: "Image", make: CheckArm64Image, kbuild: "Image"},
}

func copyKernel(_ context.Context, src, dst string) error { return fsutil.CopyFile(src, dst, 0o644) }

// format is the target's kernel format.
func (t *Target) format() (kernelFormat, error) {
	f, ok := kernelFormats[t.QEMU.KernelFormat]
	if !ok {
		return f, fmt.Errorf("%s: qemu.kernel_format %q: want bzimage, zimage, vmlinux, arm-image or arm64-image", t.File(), t.QEMU.KernelFormat)
	}
	return f, nil
}

// bootImageName is the boot image kbuild makes for the target (zImage, bzImage, Image).
func bootImageName(t *Target) string {
	f, _ := t.format() // checked when the recipe was read
	return f.kbuild
}

// stage writes the kernel file (and the stub) into the image directory out; it
// returns the files the image hash covers.
func (f kernelFormat) stage(ctx context.Context, t *Target, compressed, out string) ([]string, error) {
	files := []string{filepath.Join(out, f.file)}
	if err := f.make(ctx, compressed, files[0]); err != nil {
		return nil, err
	}
	if f.stub {
		stub := filepath.Join(out, bootStubFile)
		if err := os.WriteFile(stub, ArmBootStub(t.QEMU.KernelAddr), 0o644); err != nil {
			return nil, err
		}
		files = append(files, stub)
	}
	return files, nil
}

// KernelArgs is QEMU's part of the command line that loads the kernel of an image
// whose kernel file is kernel and, for a stub format, whose stub is stub.
func (t *Target) KernelArgs(kernel, stub string) []string {
	if stub != "" {
		// QEMU sets up the device tree, initramfs and registers for the stub as for a
		// zImage; the stub jumps to the uncompressed kernel the loader put in place.
		return []string{"-kernel", stub,
			"-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", kernel, t.QEMU.KernelAddr)}
	}
	return []string{"-kernel", kernel}
}

// ExtractVmlinux finds the XZ stream inside a compressed kernel image and writes the
// uncompressed ELF (the kernel's own scripts/extract-vmlinux does the same). It needs
// the xz tool (xz-utils), or zstd for zstd-compressed kernels.
func ExtractVmlinux(ctx context.Context, image, dst string) error {
	out, err := extractPayload(ctx, image, func(out []byte, _ error) bool {
		// The tool may complain about the bytes after the stream: what counts is an ELF.
		f, err := elf.NewFile(bytes.NewReader(out))
		return err == nil && f.Close() == nil
	})
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// CheckArm64Image copies an arm64 Image after checking its header's magic ("ARM\x64"
// at byte 56, the kernel's Documentation/arch/arm64/booting.rst): a compressed or
// EFI-zboot kernel, which QEMU cannot boot as -kernel, is an error that says so.
func CheckArm64Image(_ context.Context, src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 64)
	if _, err := io.ReadFull(f, hdr); err != nil || !bytes.Equal(hdr[56:60], []byte("ARM\x64")) {
		return fmt.Errorf("%s: not an uncompressed arm64 Image (no ARM\\x64 magic at byte 56): qemu.kernel_format arm64-image needs one", src)
	}
	return fsutil.CopyFile(src, dst, 0o644)
}

// ExtractArmImage writes the uncompressed kernel (arch/arm/boot/Image) held by an ARM
// zImage. An Image has no header to recognise, so the stream must decompress whole.
func ExtractArmImage(ctx context.Context, zimage, dst string) error {
	out, err := extractPayload(ctx, zimage, func(out []byte, runErr error) bool {
		return runErr == nil && len(out) >= 1<<20
	})
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// extractPayload finds the compressed kernel inside a self-decompressing image: the
// XZ (else zstd) stream after the decompressor. The decompressor's own code holds the
// magic too, so each place it occurs is tried until ok accepts what the tool made of
// it (its output, and its error: the image goes on after the stream).
func extractPayload(ctx context.Context, image string, ok func(out []byte, runErr error) bool) ([]byte, error) {
	data, err := os.ReadFile(image)
	if err != nil {
		return nil, err
	}
	tool, args, magic := "xz", []string{"-dc", "--single-stream"}, []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	if !bytes.Contains(data, magic) {
		tool, args, magic = "zstd", []string{"-dc"}, []byte{0x28, 0xb5, 0x2f, 0xfd}
	}
	for off := 0; ; off++ {
		i := bytes.Index(data[off:], magic)
		if i < 0 {
			return nil, fmt.Errorf("%s: no XZ- or zstd-compressed kernel inside", image)
		}
		off += i
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, tool, args...)
		cmd.Stdin, cmd.Stdout = bytes.NewReader(data[off:]), &out
		runErr := cmd.Run()
		if errors.Is(runErr, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s not found: install xz-utils and zstd", tool)
		}
		if ok(out.Bytes(), runErr) {
			return out.Bytes(), nil
		}
	}
}

// bootStubFile is an arm-image's -kernel: see ArmBootStub.
const bootStubFile = "boot-stub.bin"

// ArmBootStub is the program QEMU's -kernel runs for an arm-image target: QEMU enters it
// as it would a zImage (r0 = 0, r1 = the machine type, r2 = the device tree's address,
// MMU off), and it jumps to the uncompressed kernel at addr with those registers as
// they are. It is "ldr pc, [pc, #-4]" followed by the address (little-endian).
func ArmBootStub(addr uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, 0xe51ff004)
	binary.LittleEndian.PutUint32(b[4:], uint32(addr))
	return b
}
