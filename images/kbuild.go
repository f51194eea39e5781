package images

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/kmodlab/kmodlab/images/debian"
)

// wrapKbuildTools makes a newer suite's kbuild host tools (modpost, objtool, …) run on
// an older host: the tools that need a newer glibc than the host has are renamed to
// TOOL.bin and replaced by a script that starts them through the suite's own loader and
// libraries, unpacked next to the headers (kbuild-libs/). Nothing is installed on the host.
func wrapKbuildTools(ctx context.Context, root *debian.Root, dir string, libs []string) error {
	host := hostGlibc()
	var specs []string
	for _, l := range libs {
		specs = append(specs, qualify(l, hostDebArch(), ""))
	}
	debs, err := root.Download(ctx, specs)
	if err != nil {
		return err
	}
	libDir := filepath.Join(dir, "kbuild-libs")
	for _, d := range debs {
		if err := debian.Extract(ctx, d, libDir); err != nil {
			return err
		}
	}
	loader := ""
	for _, c := range []string{"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", "usr/lib/i386-linux-gnu/ld-linux.so.2"} {
		if _, err := os.Stat(filepath.Join(libDir, c)); err == nil {
			loader = c
			break
		}
	}
	if loader == "" {
		return fmt.Errorf("kbuild_libs: no dynamic loader in %s", strings.Join(libs, ", "))
	}
	multiarch := filepath.Dir(loader)
	tools, _ := filepath.Glob(filepath.Join(dir, "usr/lib/linux-kbuild-*"))
	n := 0
	for _, top := range tools {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if need := glibcNeeded(p); need == 0 || need <= host {
				return nil
			}
			if err := os.Rename(p, p+".bin"); err != nil {
				return err
			}
			rel, err := filepath.Rel(filepath.Dir(p), libDir)
			if err != nil {
				return err
			}
			script := fmt.Sprintf("#!/bin/sh\n# %s needs a newer glibc than the host's: run it with its suite's loader.\n"+
				"L=$(cd \"$(dirname \"$0\")/%s\" && pwd)\n"+
				"exec \"$L/%s\" --library-path \"$L/%s:$L/%s\" \"$0.bin\" \"$@\"\n",
				filepath.Base(p), rel, loader, multiarch, strings.TrimPrefix(multiarch, "usr/"))
			n++
			return os.WriteFile(p, []byte(script), 0o755)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// glibcNeeded is the highest GLIBC_2.N symbol version an ELF file needs (N), 0 if none.
func glibcNeeded(p string) int {
	f, err := elf.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil {
		return 0
	}
	best := 0
	for _, s := range syms {
		if v, ok := strings.CutPrefix(s.Version, "GLIBC_2."); ok {
			v, _, _ = strings.Cut(v, ".")
			if n, err := strconv.Atoi(v); err == nil && n > best {
				best = n
			}
		}
	}
	return best
}

// hostGlibc is the host's glibc minor version (2.N -> N); 0 when unknown, which wraps
// every tool that names a glibc version.
func hostGlibc() int {
	out, err := exec.Command("getconf", "GNU_LIBC_VERSION").Output()
	if err != nil {
		return 0
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return 0
	}
	_, minor, _ := strings.Cut(f[1], ".")
	minor, _, _ = strings.Cut(minor, ".")
	n, _ := strconv.Atoi(minor)
	return n
}

// hostDebArch is the Debian name of the architecture kbuild's host tools run on.
func hostDebArch() string {
	switch runtime.GOARCH {
	case "arm64":
		return "arm64"
	case "386":
		return "i386"
	}
	return "amd64"
}

// fixCompiler points the headers' CC at the host's compiler when the versioned one
// they name (a newer suite's gcc-14, gcc-16) is not installed: the module is then built
// by the host's gcc, which kbuild accepts (Debian's headers skip the version check).
// The fix needs to know what that gcc accepts, so a missing compiler is an error (naming
// its package), never headers cached unfixed.
func fixCompiler(dir, build, cross, crossPackage string) error {
	vars := filepath.Join(build, ".kernelvariables")
	data, err := os.ReadFile(vars)
	if err != nil {
		return nil // older headers have no such file
	}
	re := regexp.MustCompile(`\$\(CROSS_COMPILE\)gcc-(\d+)`)
	m := re.FindSubmatch(data)
	if m == nil {
		return nil
	}
	if _, err := exec.LookPath(cross + "gcc-" + string(m[1])); err == nil {
		return nil
	}
	if err := os.WriteFile(vars, re.ReplaceAll(data, []byte("$(CROSS_COMPILE)gcc")), 0o644); err != nil {
		return err
	}
	// gcc 14's -fmin-function-alignment (x86 and arm64 kernels ask for it) is -falign-functions
	// to an older gcc: the same function alignment for the module's code.
	mks, _ := filepath.Glob(filepath.Join(dir, "usr/src/linux-headers-*-common/Makefile"))
	for _, mk := range mks {
		if data, err := os.ReadFile(mk); err == nil && bytes.Contains(data, []byte("-fmin-function-alignment=")) {
			if _, err := exec.LookPath(cross + "gcc"); err != nil {
				return fmt.Errorf("%sgcc not found: install it with 'sudo apt-get install %s' (or run 'make setup'): these headers name a newer gcc and must be adapted to this one", cross, crossPackage)
			}
			if !gccAccepts(cross+"gcc", "-fmin-function-alignment=16") {
				data = bytes.ReplaceAll(data, []byte("-fmin-function-alignment="), []byte("-falign-functions="))
				if err := os.WriteFile(mk, data, 0o644); err != nil {
					return err
				}
				if err := dropCallOpsEntries(filepath.Dir(mk)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// dropCallOpsEntries builds modules without patchable function entries for an arm64
// kernel with DYNAMIC_FTRACE_WITH_CALL_OPS when the compiler cannot promise its minimum
// function alignment: each patch site needs its function 8-byte aligned (a literal sits
// before it), -falign-functions leaves cold functions (__init, __exit) unaligned in gcc
// 12, and 6.12 then BUGs in ftrace while loading the module ("Misaligned patch-site",
// arch/arm64/kernel/patching.c). The cost: the module's functions cannot be ftraced.
func dropCallOpsEntries(common string) error {
	mk := filepath.Join(common, "arch/arm64/Makefile")
	data, err := os.ReadFile(mk)
	if err != nil {
		return nil // not arm64 headers
	}
	entries := []byte("CC_FLAGS_FTRACE := -fpatchable-function-entry=4,2")
	if !bytes.Contains(data, entries) {
		return nil
	}
	return os.WriteFile(mk, bytes.ReplaceAll(data, entries, []byte("CC_FLAGS_FTRACE := # kmodlab: no patch sites, see images/kbuild.go")), 0o644)
}

func gccAccepts(gcc, flag string) bool {
	cmd := exec.Command(gcc, flag, "-x", "c", "-c", "-o", os.DevNull, "-")
	cmd.Stdin = strings.NewReader("int x;\n")
	return cmd.Run() == nil
}
