package images

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/kmodlab/kmodlab/images/debian"
)

// buildKernel fetches and unpacks the source, writes the inputs next to it and runs
// the build script, logging its steps; the build tree stays for module builds.
func (b *Builder) buildKernel(ctx context.Context, t *Target, root *debian.Root, k *built, in *kernelInputs) error {
	start := time.Now()
	log := b.log().With("target", t.Name)
	os.RemoveAll(k.dir)
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return err
	}
	if err := b.unpackSource(ctx, root, k.src, in); err != nil {
		return err
	}
	inputs := filepath.Join(k.dir, "inputs")
	if err := os.MkdirAll(inputs, 0o755); err != nil {
		return err
	}
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(inputs, name)
		return p, os.WriteFile(p, data, 0o644)
	}
	basePath, err := write("base.config", in.base)
	if err != nil {
		return err
	}
	lsmodPath, err := write("lsmod", in.lsmod)
	if err != nil {
		return err
	}
	scriptPath, err := write("build-kernel.sh", in.script)
	if err != nil {
		return err
	}
	var frags []string
	for i, n := range in.order {
		p, err := write(fmt.Sprintf("%02d-%s.config", i, n), in.fragments[n])
		if err != nil {
			return err
		}
		frags = append(frags, p)
	}
	cmd := exec.CommandContext(ctx, "sh", scriptPath)
	if in.lean {
		leanPath, err := write("lean-base.sh", in.leanScript)
		if err != nil {
			return err
		}
		cmd = exec.CommandContext(ctx, "sh", leanPath)
	}
	cmd.Env = append(os.Environ(), "SRC="+k.src, "OUT="+k.out, "KARCH="+t.ModuleBuild.Arch,
		"CROSS="+t.ModuleBuild.CrossCompile, "BASE="+basePath, "LSMOD="+lsmodPath,
		"FRAGMENTS="+strings.Join(frags, " "), "TARGETS="+bootImageName(t)+" modules",
		"JOBS="+fmt.Sprint(buildJobs()), "LC_ALL=C")
	if in.lean {
		cmd.Env = append(cmd.Env, "LEANBASE="+basePath, "BUILD="+scriptPath, "LEANCONFIG="+filepath.Join(inputs, "lean.config"))
	}
	if p, err := exec.LookPath("ccache"); err == nil {
		cmd.Env = append(cmd.Env, "CCACHE="+p, "CCACHE_DIR="+filepath.Join(b.CacheDir, "ccache"),
			"CCACHE_BASEDIR="+filepath.Join(b.CacheDir, "kernels"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	logFile, err := os.Create(filepath.Join(k.dir, "build.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	done := make(chan struct{})
	var tail []string
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if step, ok := strings.CutPrefix(line, "step "); ok {
				log.Info("kernel build", "step", step, "seconds", time.Since(start).Seconds())
			}
			tail = append(tail, line)
			if len(tail) > 20 {
				tail = tail[1:]
			}
		}
		io.Copy(io.Discard, pr)
	}()
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-done
		return err
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	for {
		select {
		case <-ticker.C:
			log.Info("kernel build: still building", "seconds", time.Since(start).Seconds(), "objects", countObjects(k.out))
			continue
		case err = <-waitErr:
		}
		break
	}
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%w (log: %s)\n%s", err, logFile.Name(), strings.Join(tail, "\n"))
	}
	cfg, err := os.ReadFile(filepath.Join(k.out, ".config"))
	if err != nil {
		return err
	}
	// The final .config is kept with the kernel (and copied into each image).
	if err := os.WriteFile(filepath.Join(k.dir, "config"), cfg, 0o644); err != nil {
		return err
	}
	log.Info("kernel built", "seconds", time.Since(start).Seconds(), "dir", k.dir)
	return os.WriteFile(filepath.Join(k.dir, ".complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// unpackSource fetches the source package and unpacks its tarball into dir, once per
// version (dir/.complete says it is whole).
func (b *Builder) unpackSource(ctx context.Context, root *debian.Root, dir string, in *kernelInputs) error {
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return nil
	}
	b.log().Info("kernel build: fetching the source", "package", in.pkg, "version", in.version)
	stage, err := b.fetch(ctx, root, "ksrc-", []string{in.pkg + ":all=" + in.version})
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	tars, _ := filepath.Glob(filepath.Join(stage, "usr/src", in.pkg+".tar.*"))
	if len(tars) != 1 {
		return fmt.Errorf("%s: no single source tarball in the package (%v)", in.pkg, tars)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xaf", tars[0], "-C", dir, "--strip-components=1").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("unpack %s: %w\n%s", tars[0], err, out)
	}
	return os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644)
}

// buildJobs is make's -j: one job per CPU.
func buildJobs() int { return runtime.NumCPU() }

// lockFile takes an exclusive lock on file, waiting until ctx ends.
func lockFile(ctx context.Context, file string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// countObjects counts the object files a build tree holds so far: the build is silent
// (make -s), and this is what shows it moving.
func countObjects(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".o") {
			n++
		}
		return nil
	})
	return n
}
