package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// Targets says what a named machine is and how it gets kernel modules: the part of a
// runner kind that the build stage needs. Every runner kind is one (fleet.Provider),
// so is the pipeline's view of them all (run.Machines), and a LAVA lab's entries are
// described by the QEMU kind's (lava.Provider.Base).
type Targets interface {
	// Describe says what the named machine is without starting it.
	Describe(name string) (runner.Info, error)
	// Strategy says how the machine gets the job's kernel modules: cross-built on the
	// host, built natively on the machine, or prebuilt.
	Strategy(ctx context.Context, name, cacheDir string, strict bool) (Strategy, error)
}

// Strategy is how a machine gets a job's kernel modules: cross-built on the host
// against the machine's exact headers (QEMU targets), built natively on the machine
// against its installed headers (boards), or taken prebuilt from a directory. The
// pipeline names no strategy: the fleet picks one per machine, and the same calls
// build and install the job's modules and the canary alike.
type Strategy interface {
	// Name is "cross", "native" or "prebuilt", for reports.
	Name() string
	// Prepare builds what can be built before a machine exists (cross builds: a build
	// error then fails the target before anything boots). It returns the module's
	// content hash.
	Prepare(ctx context.Context, name, src string) (hash string, err error)
	// Install puts name.ko (built from src) in dest on the machine. The files that
	// Install produced, on the host, are returned for symbolizing (nil when the module
	// was built on the machine).
	Install(ctx context.Context, r runner.Runner, name, src, dest string) (hostKO string, err error)
}

// Cross builds on the host with kbuild against the target's headers.
type Cross struct {
	Kbuild   Kbuild
	CacheDir string
	Strict   bool // warnings under W=1 fail the build
	results  map[string]*Result
}

// Name implements Strategy.
func (c *Cross) Name() string { return "cross" }

// Prepare implements Strategy.
func (c *Cross) Prepare(ctx context.Context, name, src string) (string, error) {
	if _, err := c.ko(ctx, name, src); err != nil {
		return "", err
	}
	return HashTree(src), nil
}

// Result is the last build of a module (its log, warnings and time), nil before one.
func (c *Cross) Result(name string) *Result { return c.results[name] }

func (c *Cross) ko(ctx context.Context, name, src string) (string, error) {
	r, err := Build(ctx, c.Kbuild, src, c.CacheDir, Options{Strict: c.Strict})
	if c.results == nil {
		c.results = map[string]*Result{}
	}
	c.results[name] = r
	if err != nil {
		return "", fmt.Errorf("module %s: %w", name, err)
	}
	for _, ko := range r.KOs {
		if strings.TrimSuffix(filepath.Base(ko), ".ko") == name {
			return ko, nil
		}
	}
	return "", fmt.Errorf("module %s: the build in %s made no %s.ko", name, src, name)
}

// Install implements Strategy.
func (c *Cross) Install(ctx context.Context, r runner.Runner, name, src, dest string) (string, error) {
	ko, err := c.ko(ctx, name, src) // cached: the same bits Prepare built
	if err != nil {
		return "", err
	}
	return ko, r.Copy(ctx, ko, path.Join(dest, name+".ko"), 0o644)
}

// Native copies the sources to the machine and runs kbuild there against
// /lib/modules/$(uname -r)/build.
type Native struct{}

// Name implements Strategy.
func (Native) Name() string { return "native" }

// Prepare implements Strategy: nothing can be built before the machine is there.
func (Native) Prepare(ctx context.Context, name, src string) (string, error) {
	return HashTree(src), nil
}

// Install implements Strategy.
func (Native) Install(ctx context.Context, r runner.Runner, name, src, dest string) (string, error) {
	rdir := path.Join(dest, "kmodlab-src", name)
	if err := r.Run(ctx, "rm -rf "+runner.Quote(rdir)+" && mkdir -p "+runner.Quote(rdir), nil, nil); err != nil {
		return "", err
	}
	err := filepath.Walk(src, func(f string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || buildProduct(fi.Name()) {
			return err
		}
		rel, _ := filepath.Rel(src, f)
		rel = filepath.ToSlash(rel)
		if strings.Contains(rel, "/") {
			if err := r.Run(ctx, "mkdir -p "+runner.Quote(path.Join(rdir, path.Dir(rel))), nil, nil); err != nil {
				return err
			}
		}
		return r.Copy(ctx, f, path.Join(rdir, rel), 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("copy %s sources: %w", name, err)
	}
	cmd := fmt.Sprintf("make -C /lib/modules/$(uname -r)/build M=%s modules && cp %s %s",
		runner.Quote(rdir), runner.Quote(path.Join(rdir, name+".ko")), runner.Quote(path.Join(dest, name+".ko")))
	if out, err := runner.Output(ctx, r, cmd); err != nil {
		// An error in the module's own sources (paths under rdir) is the module's.
		files, _ := sourceFiles(src)
		ds := ParseLog(out, Paths{Work: rdir, Files: files})
		if first := FirstError(ds); first != nil && ctx.Err() == nil {
			return "", &Failure{Src: src, Release: "the machine's kernel", Result: &Result{Log: out, Diagnostics: ds}, First: first}
		}
		return "", fmt.Errorf("native build of %s: %w\n%s", name, err, tail(out, 20))
	}
	return "", nil
}

// Prebuilt takes name.ko from a directory on the host.
type Prebuilt struct{ Dir string }

// Name implements Strategy.
func (p *Prebuilt) Name() string { return "prebuilt" }

// Prepare implements Strategy: the file must be there.
func (p *Prebuilt) Prepare(ctx context.Context, name, src string) (string, error) {
	ko := filepath.Join(p.Dir, name+".ko")
	if _, err := os.Stat(ko); err != nil {
		return "", fmt.Errorf("prebuilt module %s: %w", name, err)
	}
	return hashFile(ko)
}

// Install implements Strategy.
func (p *Prebuilt) Install(ctx context.Context, r runner.Runner, name, src, dest string) (string, error) {
	ko := filepath.Join(p.Dir, name+".ko")
	if err := r.Copy(ctx, ko, path.Join(dest, name+".ko"), 0o644); err != nil {
		return "", fmt.Errorf("prebuilt module %s: %w", ko, err)
	}
	return ko, nil
}

func hashFile(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8]), nil
}
