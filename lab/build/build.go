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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
	r, err := Build(ctx, k, src, cacheDir, Options{Strict: strict})
	if r != nil {
		kos, log = r.KOs, r.Log
	}
	return kos, log, err
}

// Options of one module build.
type Options struct {
	Strict bool // the module's own W=1 warnings fail the build
	Fresh  bool // build even when the cache has the result (a sweep times its builds)
}

// Result is one module build: its products, its log, and the log's diagnostics.
type Result struct {
	KOs         []string
	Log         string
	Diagnostics []Diagnostic
	Seconds     float64 // the make run (0 when cached)
	CPUSeconds  float64 // CPU time of make and its children: the build's cost on an idle core
	Cached      bool
}

// Warnings are the module's own W=1 warnings (kernel headers' are left out).
func (r *Result) Warnings() []Diagnostic { return ModuleWarnings(r.Diagnostics) }

// Failure is a build that failed because of the module's own sources: a compiler,
// assembler, make or modpost error in them, no .ko, or (strict) W=1 warnings. A
// failure of the lab's own pieces (no cross compiler, a headers tree kbuild cannot
// use) is a plain error instead.
type Failure struct {
	Src     string
	Release string
	Result  *Result
	First   *Diagnostic // the first error (or, strict, the first warning)
	Strict  bool        // failed on W=1 warnings
	Err     error       // what failed when no diagnostic says it
}

func (f *Failure) Error() string {
	what := "error"
	if f.Strict {
		what = "warnings with W=1 (strict)"
	}
	msg := fmt.Sprintf("build module %s for %s: %s", f.Src, f.Release, what)
	if f.First != nil {
		msg += ": " + f.First.String()
	}
	if f.Err != nil {
		msg += ": " + f.Err.Error()
	}
	if f.Result != nil && f.Result.Log != "" {
		msg += "\n" + tail(f.Result.Log, 30)
	}
	return msg
}

// Build builds a module like Module, with the build's log parsed into diagnostics.
// A failure caused by the module's sources is a *Failure.
func Build(ctx context.Context, k Kbuild, src, cacheDir string, o Options) (*Result, error) {
	if k.CrossCompile != "" {
		if _, err := exec.LookPath(k.CrossCompile + "gcc"); err != nil {
			return nil, fmt.Errorf("%sgcc not found: install it with 'sudo apt-get install %s' (or run 'make setup')", k.CrossCompile, k.CrossPackage)
		}
	}
	h, err := hashTree(src)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", src, err)
	}
	files, err := sourceFiles(src)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(strings.Join([]string{h, k.Headers, k.Arch, k.CrossCompile, fmt.Sprint(o.Strict)}, "\n")))
	out := filepath.Join(cacheDir, "kbuild", k.Release+"-"+hex.EncodeToString(key[:8]))
	if kos, err := filepath.Glob(filepath.Join(out, "*.ko")); err == nil && len(kos) > 0 && !o.Fresh {
		logb, _ := os.ReadFile(filepath.Join(out, "build.log"))
		work, _ := os.ReadFile(filepath.Join(out, "build.workdir"))
		r := &Result{KOs: kos, Log: string(logb), Cached: true}
		r.Diagnostics = ParseLog(r.Log, Paths{Work: string(work), Files: files})
		return r, nil
	}
	work, err := os.MkdirTemp("", "kmodlab-kbuild-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := copyTree(src, work); err != nil {
		return nil, err
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
	// Plain quotes in messages whatever the host's locale (the kernel's Makefile unexports LC_ALL).
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C", "LC_CTYPE=C", "LC_MESSAGES=C")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	t0 := time.Now()
	runErr := cmd.Run()
	r := &Result{Log: buf.String(), Seconds: time.Since(t0).Seconds()}
	if ps := cmd.ProcessState; ps != nil {
		r.CPUSeconds = (ps.UserTime() + ps.SystemTime()).Seconds() // make's and every compiler's it waited for
	}
	r.Diagnostics = ParseLog(r.Log, Paths{Work: work, Files: files})
	if runErr != nil {
		if ctx.Err() != nil {
			return r, fmt.Errorf("build module %s for %s: %w", src, k.Release, ctx.Err())
		}
		if first := FirstError(r.Diagnostics); first != nil {
			return r, &Failure{Src: src, Release: k.Release, Result: r, First: first}
		}
		// No error in the module's sources: the headers tree or the toolchain failed.
		return r, fmt.Errorf("build module %s for %s: %w (no error in the module's sources: the kernel headers or the toolchain failed)\n%s", src, k.Release, runErr, tail(r.Log, 30))
	}
	if w := r.Warnings(); o.Strict && len(w) > 0 {
		return r, &Failure{Src: src, Release: k.Release, Result: r, First: &w[0], Strict: true}
	}
	built, _ := filepath.Glob(filepath.Join(work, "*.ko"))
	if len(built) == 0 {
		return r, &Failure{Src: src, Release: k.Release, Result: r, Err: errors.New("no .ko produced (does its Kbuild name obj-m?)")}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	for _, b := range built {
		dst := filepath.Join(out, filepath.Base(b))
		if err := fsutil.CopyFile(b, dst, 0o644); err != nil {
			return nil, err
		}
		r.KOs = append(r.KOs, dst)
	}
	os.WriteFile(filepath.Join(out, "build.log"), buf.Bytes(), 0o644)
	os.WriteFile(filepath.Join(out, "build.workdir"), []byte(work), 0o644)
	return r, nil
}

// sourceFiles are the module's files relative to its directory (build products left out).
func sourceFiles(dir string) (map[string]bool, error) {
	files := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !buildProduct(d.Name()) {
			rel, _ := filepath.Rel(dir, p)
			files[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	return files, err
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
