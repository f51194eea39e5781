// Package build makes what a job deploys: kernel modules built with kbuild against a
// target's exact headers (cross-compiled for ARM), and static Go binaries for the
// target's architecture. Module builds are cached by the hash of their sources and
// headers tree.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kmodlab/kmodlab/internal/fsutil"
)

// Kbuild says how to build modules for one kernel.
type Kbuild struct {
	Headers      string // make -C here
	Arch         string // ARCH=
	CrossCompile string // CROSS_COMPILE=
	CrossPackage string // for the error when the compiler is missing
	Release      string // for the cache key and messages
}

// Module builds the module sources in src (a Kbuild or Makefile directory) and returns
// the .ko files it produced, copied into cacheDir. Warnings are errors under W=1 only
// when strict is set. The build log is returned too.
func Module(ctx context.Context, k Kbuild, src, cacheDir string, strict bool) (kos []string, log string, err error) {
	if k.CrossCompile != "" {
		if _, err := exec.LookPath(k.CrossCompile + "gcc"); err != nil {
			return nil, "", fmt.Errorf("%sgcc not found: install it with 'sudo apt-get install %s' (or run 'make setup')", k.CrossCompile, k.CrossPackage)
		}
	}
	h, err := hashTree(src)
	if err != nil {
		return nil, "", fmt.Errorf("module %s: %w", src, err)
	}
	key := sha256.Sum256([]byte(strings.Join([]string{h, k.Headers, k.Arch, k.CrossCompile, fmt.Sprint(strict)}, "\n")))
	out := filepath.Join(cacheDir, "kbuild", k.Release+"-"+hex.EncodeToString(key[:8]))
	if kos, err := filepath.Glob(filepath.Join(out, "*.ko")); err == nil && len(kos) > 0 {
		logb, _ := os.ReadFile(filepath.Join(out, "build.log"))
		return kos, string(logb), nil
	}
	work, err := os.MkdirTemp("", "kmodlab-kbuild-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(work)
	if err := copyTree(src, work); err != nil {
		return nil, "", err
	}
	// CONFIG_DEBUG_INFO_BTF_MODULES= skips the BTF step: a module loads without it, and
	// newer kernels (6.12) ask the host's pahole for options Debian 12's does not have.
	args := []string{"-C", k.Headers, "M=" + work, "W=1", "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"}
	if k.Arch != "" {
		args = append(args, "ARCH="+k.Arch)
	}
	if k.CrossCompile != "" {
		args = append(args, "CROSS_COMPILE="+k.CrossCompile)
	}
	cmd := exec.CommandContext(ctx, "make", args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return nil, buf.String(), fmt.Errorf("build module %s for %s: %w\n%s", src, k.Release, err, tail(buf.String(), 30))
	}
	if strict {
		if w := warnings(buf.String()); w != "" {
			return nil, buf.String(), fmt.Errorf("build module %s for %s: warnings with W=1:\n%s", src, k.Release, w)
		}
	}
	built, _ := filepath.Glob(filepath.Join(work, "*.ko"))
	if len(built) == 0 {
		return nil, buf.String(), fmt.Errorf("build module %s: no .ko produced", src)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, "", err
	}
	for _, b := range built {
		dst := filepath.Join(out, filepath.Base(b))
		if err := fsutil.CopyFile(b, dst, 0o644); err != nil {
			return nil, "", err
		}
		kos = append(kos, dst)
	}
	os.WriteFile(filepath.Join(out, "build.log"), buf.Bytes(), 0o644)
	return kos, buf.String(), nil
}

// warnings returns the compiler warning lines of a build log.
func warnings(log string) string {
	var w []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "warning:") {
			w = append(w, l)
		}
	}
	return strings.Join(w, "\n")
}

// Go builds a main package as a static binary for goarch (goarm for arm) into dst.
// dir is the module root to build from.
func Go(ctx context.Context, dir, pkg, goarch, goarm, dst string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dst, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
	if goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+goarm)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, goarch, err, out)
	}
	return nil
}

// hashTree hashes every regular file under dir except build products.
func hashTree(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !buildProduct(d.Name()) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(h, "%s\n", rel)
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HashTree is the content hash of a source tree (recorded in reports).
func HashTree(dir string) string {
	h, _ := hashTree(dir)
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

func buildProduct(name string) bool {
	for _, suf := range []string{".o", ".ko", ".mod", ".mod.c", ".cmd", ".symvers", ".order"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return strings.HasPrefix(name, ".")
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() || buildProduct(d.Name()) {
			return nil
		}
		return fsutil.CopyFile(p, target, 0o644)
	})
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
