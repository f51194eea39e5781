//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/images/debian"
	"github.com/kmodlab/kmodlab/internal/workflowlint"
	"github.com/kmodlab/kmodlab/lab/report"
	"gopkg.in/yaml.v3"
)

// The rootfs test runs one x86_64 cell with short stress: the point is the environment
// (packages, Go, build, reports), not the verdicts, which TestDefaultJob covers. The cap
// is 20 s a step, although the cell stops at enough evidence in ~3 s alone: with 3 s
// steps a busy host once left it at 37 of the job's 40 verified I/O (INCONCLUSIVE), and
// the rootfs and composite-action tests run beside others (t.Parallel).
var rootfsArgs = []string{"--cell", "x86_64/copier", "--set", "stress=20s", "--seed", "5"}

// workflowLab is what the test needs from the workflow: the script its QEMU shards run
// in the container, where the checkout and Go are mounted, and the job and cache paths.
type workflowLab struct {
	Script, Workdir, GoPath, Job, Cache string
}

func readWorkflow(t *testing.T) workflowLab {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".github/workflows/kmodlab.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Env  map[string]string `yaml:"env"`
		Jobs map[string]struct {
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	// The shard step: docker run … -w DIR … debian:bookworm SCRIPT run OUT JOB ARGS.
	re := regexp.MustCompile(`(?s)docker run .*-w (/\S+).*debian:bookworm (scripts/ci-[A-Za-z0-9_-]+\.sh) run `)
	var w workflowLab
	for _, s := range wf.Jobs["lab"].Steps {
		if m := re.FindStringSubmatch(s.Run); m != nil {
			w.Workdir, w.Script = m[1], m[2]
		}
	}
	w.GoPath, w.Job, w.Cache = wf.Env["GO_IN_CONTAINER"], wf.Env["JOB"], wf.Env["KMODLAB_CACHE"]
	if w.Script == "" || w.GoPath == "" || w.Job == "" || w.Cache == "" {
		t.Fatalf("workflow: cannot find the lab job's container script, GO_IN_CONTAINER, JOB or KMODLAB_CACHE: %+v", w)
	}
	return w
}

// baseMaxAge is how long a built bookworm base is reused, about how often Docker Hub's
// debian:bookworm image is rebuilt: a runner pulls a cached image, not a new one, for
// each job. The packages the script installs come from the archive on every run.
const baseMaxAge = 7 * 24 * time.Hour

// bookwormBase is a tarball of a clean debian:bookworm root filesystem, mmdebstrap
// --variant=apt from the host's apt sources: the test's stand-in for the workflow's
// container image. It is built once and kept in the user's cache dir, keyed by the
// sources' content, for baseMaxAge (cold: always built anew, into the test's temp dir).
func bookwormBase(t *testing.T, ctx context.Context, sources []string, cold bool) string {
	t.Helper()
	h := sha256.New()
	for _, f := range sources {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	dir := t.TempDir()
	if c, err := os.UserCacheDir(); err == nil && !cold {
		dir = filepath.Join(c, "kmodlab-e2e")
	}
	tarball := filepath.Join(dir, fmt.Sprintf("bookworm-apt-%x.tar", h.Sum(nil)[:8]))
	if st, err := os.Stat(tarball); err == nil && time.Since(st.ModTime()) < baseMaxAge {
		return tarball
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := tarball + ".part.tar" // mmdebstrap picks the output format by the name's ending
	defer os.Remove(tmp)
	args := append([]string{"--variant=apt", "--quiet", "bookworm", tmp}, sources...)
	if out, err := exec.CommandContext(ctx, "mmdebstrap", args...).CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v\n%s", err, lastLines(string(out), 20))
	}
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	return tarball
}

// mmdebstrapReady installs mmdebstrap when missing; "" when it can run, else why not.
func mmdebstrapReady(t *testing.T) string {
	if os.Getuid() != 0 {
		return "not root: binding /dev, /proc and /sys into a chroot needs root"
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		out, err := exec.Command("apt-get", "install", "-y", "-q", "--no-install-recommends", "mmdebstrap").CombinedOutput()
		if err != nil {
			return fmt.Sprintf("mmdebstrap is not installed and apt-get install failed: %v: %s", err, lastLines(string(out), 3))
		}
	}
	return ""
}

// debianSources are the host's apt sources that serve bookworm (or KMODLAB_APT_SOURCES),
// handed to mmdebstrap as its mirrors: no mirror is named here.
func debianSources(t *testing.T) []string {
	if f := os.Getenv(debian.SourcesEnv); f != "" {
		return []string{f}
	}
	files := []string{"/etc/apt/sources.list"}
	for _, p := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(p)
		files = append(files, m...)
	}
	var out []string
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && strings.Contains(string(data), "bookworm") {
			out = append(out, f)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// chroot is a root filesystem with mounts, torn down on every path.
type chroot struct {
	t      *testing.T
	dir    string
	mounts []string
	after  []string // directories removed once nothing is mounted (an overlay's layers)
}

func (c *chroot) mount(args ...string) {
	c.t.Helper()
	target := args[len(args)-1]
	if err := os.MkdirAll(target, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		c.t.Fatalf("mount %v: %v: %s", args, err, out)
	}
	if !strings.Contains(strings.Join(args, " "), "remount") {
		c.mounts = append(c.mounts, target)
	}
}

// tryMount is mount that reports failure instead of failing the test.
func (c *chroot) tryMount(args ...string) bool {
	target := args[len(args)-1]
	if err := os.MkdirAll(target, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		c.t.Logf("mount %v: %v: %s", args, err, out)
		return false
	}
	c.mounts = append(c.mounts, target)
	return true
}

// modes is the mode and owner of every file under dir, by path.
func modes(dir string) map[string]string {
	out := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		m := info.Mode().String()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			m += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
		}
		out[p] = m
		return nil
	})
	return out
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && (fs[4] == dir || strings.HasPrefix(fs[4], dir+"/")) {
			out = append(out, fs[4])
		}
	}
	return out
}

// cleanup kills what still runs inside, unmounts everything (lazily, so a busy mount
// cannot keep the host's /dev under a directory we delete), and removes the rootfs only
// when no mount is left under it.
func (c *chroot) cleanup() {
	procs, _ := filepath.Glob("/proc/[0-9]*/root")
	for _, p := range procs {
		if r, err := os.Readlink(p); err == nil && (r == c.dir || strings.HasPrefix(r, c.dir+"/")) {
			var pid int
			fmt.Sscanf(p, "/proc/%d/root", &pid)
			c.t.Logf("rootfs: killing leftover process %d", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if out, err := exec.Command("umount", "-l", c.mounts[i]).CombinedOutput(); err != nil {
			c.t.Errorf("umount %s: %v: %s", c.mounts[i], err, out)
		}
	}
	if left := mountsUnder(c.dir); len(left) > 0 {
		c.t.Errorf("rootfs %s NOT removed: still mounted: %v", c.dir, left)
		return
	}
	for _, d := range c.after {
		os.RemoveAll(d)
	}
	if out, err := exec.Command("rm", "-rf", "--one-file-system", c.dir).CombinedOutput(); err != nil {
		c.t.Errorf("rm -rf %s: %v: %s", c.dir, err, out)
	}
}

// TestWorkflowScriptInBookwormRootfs runs the workflow's lab-shard script, read from the
// workflow itself, in a fresh debian:bookworm root filesystem unpacked from a base built
// with mmdebstrap (bookwormBase, reused for a week like a pulled image): a clean clone
// of the repository, /dev, /proc and /sys bound in, the host's Go mounted where the
// workflow mounts setup-go's. The script must install what it needs, build,
// run the cell and leave the reports where the workflow's later steps read them.
//
// Caches: by default the host's image cache (read-only below an overlay: the test never
// changes the user's own cache) and Go caches are in the rootfs, like a restored
// actions/cache and setup-go cache (warm). KMODLAB_ROOTFS_COLD=1 starts from empty ones
// and a newly built base.
func TestWorkflowScriptInBookwormRootfs(t *testing.T) {
	// Most of it is apt and dpkg on one core; it runs beside the other parallel tests,
	// after the sequential ones (which count QEMU processes). Its QEMU is in the chroot.
	t.Parallel()
	if why := mmdebstrapReady(t); why != "" {
		t.Skipf("SKIP rootfs test: mmdebstrap cannot run here: %s", why)
	}
	w := readWorkflow(t)
	sources := debianSources(t)
	if len(sources) == 0 {
		t.Skipf("SKIP rootfs test: no apt source serving bookworm on this host (set %s)", debian.SourcesEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	dir, err := os.MkdirTemp("", "kmodlab-rootfs-")
	if err != nil {
		t.Fatal(err)
	}
	c := &chroot{t: t, dir: dir}
	defer c.cleanup()

	cold := os.Getenv("KMODLAB_ROOTFS_COLD") == "1"
	base := bookwormBase(t, ctx, sources, cold)
	if out, err := exec.CommandContext(ctx, "tar", "-xpf", base, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v: %s", base, err, lastLines(string(out), 5))
	}
	tDebootstrap := time.Since(start)
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		os.WriteFile(filepath.Join(dir, "etc/resolv.conf"), data, 0o644)
	}
	// Local CAs of this host's network (a TLS-inspecting egress proxy, say) go in too, as
	// a runner's network would be trusted: ca-certificates, which the script installs,
	// adds them. Without them a cold run cannot download Go modules here.
	if cas, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt"); len(cas) > 0 {
		os.MkdirAll(filepath.Join(dir, "usr/local/share/ca-certificates"), 0o755)
		for _, ca := range cas {
			if data, err := os.ReadFile(ca); err == nil {
				os.WriteFile(filepath.Join(dir, "usr/local/share/ca-certificates", filepath.Base(ca)), data, 0o644)
			}
		}
	}
	src := filepath.Join(dir, w.Workdir)
	if out, err := exec.CommandContext(ctx, "git", "clone", "--quiet", repoRoot(t), src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v: %s", err, out)
	}
	c.mount("--bind", "/dev", filepath.Join(dir, "dev"))
	c.mount("--bind", "/dev/pts", filepath.Join(dir, "dev/pts")) // apt's terminal log, as in a container
	c.mount("-t", "proc", "proc", filepath.Join(dir, "proc"))
	c.mount("--bind", "/sys", filepath.Join(dir, "sys"))
	goroot := runtime.GOROOT()
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		goroot = strings.TrimSpace(string(out))
	}
	c.mount("--bind", goroot, filepath.Join(dir, w.GoPath))
	c.mount("-o", "remount,bind,ro", filepath.Join(dir, w.GoPath))
	cacheIn := filepath.Join(w.Workdir, w.Cache)
	var goEnv []string
	if !cold {
		// The host's image cache is the lower layer of an overlay: the script and
		// kmodlab in the rootfs read it and may write (ci-lab.sh's share at exit,
		// kmodlab's mode repairs, new snapshots), but every write lands in the upper
		// layer, under this test's own directory. The user's cache is never changed
		// (checked below), and nothing is copied: make test stays fast.
		hostCache := images.DefaultCacheDir()
		before := modes(hostCache)
		defer func() {
			for p, m := range modes(hostCache) {
				if b, ok := before[p]; ok && b != m {
					t.Errorf("the rootfs test changed the user's cache: %s was %s, is %s", p, b, m)
				}
			}
		}()
		layers, err := os.MkdirTemp("", "kmodlab-rootfs-cache-")
		if err != nil {
			t.Fatal(err)
		}
		c.after = append(c.after, layers)
		upper, work := filepath.Join(layers, "upper"), filepath.Join(layers, "work")
		os.MkdirAll(upper, 0o700)
		os.MkdirAll(work, 0o700)
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", hostCache, upper, work)
		// metacopy: a chown or chmod copies up the inode, not the file's data.
		if !c.tryMount("-t", "overlay", "overlay", "-o", opts+",metacopy=on", filepath.Join(dir, cacheIn)) &&
			!c.tryMount("-t", "overlay", "overlay", "-o", opts, filepath.Join(dir, cacheIn)) {
			t.Logf("no overlay mount here: the image cache starts empty (as with KMODLAB_ROOTFS_COLD=1)")
		}
		// Same paths as on the host, so the build cache's entries for the modules hit.
		for _, v := range []string{"GOMODCACHE", "GOCACHE"} {
			if out, err := exec.Command("go", "env", v).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
				p := strings.TrimSpace(string(out))
				c.mount("--bind", p, filepath.Join(dir, p))
				goEnv = append(goEnv, v+"="+p)
			}
		}
	}

	out := "results/rootfs"
	script := fmt.Sprintf("cd %s && exec %s run %s %s %s", w.Workdir, w.Script, out, w.Job, strings.Join(rootfsArgs, " "))
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
		"GO_IN_CONTAINER=" + w.GoPath, "KMODLAB_CACHE=" + cacheIn}
	env = append(env, goEnv...)
	cmd := exec.CommandContext(ctx, "chroot", append([]string{dir, "/usr/bin/env", "-i"}, append(env, "bash", "-c", script)...)...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	scriptStart := time.Now()
	runErr := cmd.Run()
	tScript := time.Since(scriptStart)
	t.Logf("%s in the rootfs:\n%s", w.Script, lastLines(log.String(), 40))
	kind := "warm (host image and Go caches bound in)"
	if cold {
		kind = "cold (empty image and Go caches)"
	}
	t.Logf("rootfs wall time, %s: bookworm base (mmdebstrap or its cached tarball) %.0f s, %s %.0f s, total %.0f s",
		kind, tDebootstrap.Seconds(), w.Script, tScript.Seconds(), time.Since(start).Seconds())
	if runErr != nil {
		t.Fatalf("%s: %v", w.Script, runErr)
	}

	// It installed what it needs and built kmodlab in the clone.
	// Every recipe's QEMU and compiler (setup-host.sh reads them from the recipes).
	want := []string{filepath.Join(w.Workdir, "bin/kmodlab")}
	ts, err := images.Targets()
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range ts {
		want = append(want, "usr/bin/"+tg.QEMU.Binary, "usr/bin/"+tg.ModuleBuild.CrossCompile+"gcc")
	}
	for _, f := range want {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("not installed or built in the rootfs: /%s", f)
		}
	}
	// The reports are where the workflow's upload step reads them (results/<shard>/).
	res := filepath.Join(src, out)
	for _, f := range []string{"results.json", "junit.xml", "summary.md", "index.html"} {
		if st, err := os.Stat(filepath.Join(res, f)); err != nil || st.Size() == 0 {
			t.Errorf("report %s/%s missing or empty", out, f)
		}
	}
	r, err := report.Read(filepath.Join(res, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verdict matrix from the rootfs:\n%s", r.Matrix())
	if len(r.Cells) != 1 || r.Cells[0].ID != "x86_64/copier" || !r.Cells[0].Met || r.Code() != 0 {
		t.Errorf("rootfs run: %d cells, exit %d: %s", len(r.Cells), r.Code(), r.Details())
	}
}

// TestCompositeActionOnHost runs action.yml's shell steps on this host as GitHub runs a
// composite action (inputs as the step env, GITHUB_ACTION_PATH, RUNNER_TEMP,
// GITHUB_OUTPUT): plan one x86_64 cell, run it as a shard, merge the shard. `uses:` steps
// (setup-go, cache, artifacts) are GitHub's and are not run; the artifact layout the
// merge expects is made by hand.
func TestCompositeActionOnHost(t *testing.T) {
	t.Parallel()
	a, err := workflowlint.ReadAction(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	runnerTemp := t.TempDir()
	work := t.TempDir()
	expr := regexp.MustCompile(`\$\{\{\s*([^}]*?)\s*\}\}`)
	modeIf := regexp.MustCompile(`^inputs\.mode == '(\w+)'$`)

	// action runs the action's shell steps with the given inputs and returns the outputs
	// of its steps (id.name) and the last step's exit code.
	action := func(with map[string]string) (map[string]string, int) {
		t.Helper()
		in := map[string]string{}
		for k, v := range a.Inputs {
			in[k] = v.Default
		}
		for k, v := range with {
			in[k] = v
		}
		outputs := map[string]string{}
		for _, s := range a.Runs.Steps {
			if s.Run == "" {
				continue
			}
			if s.If != "" {
				run := false
				for _, term := range strings.Split(s.If, "||") {
					m := modeIf.FindStringSubmatch(strings.TrimSpace(term))
					if m == nil {
						t.Fatalf("step %q: cannot evaluate if: %s (teach this test)", s.Name, s.If)
					}
					run = run || m[1] == in["mode"]
				}
				if !run {
					continue
				}
			}
			if s.Name == "Enable KVM" {
				t.Logf("step %q not run: it changes the runner's udev rules", s.Name)
				continue
			}
			if s.Shell != "bash" {
				t.Fatalf("step %q: shell %q", s.Name, s.Shell)
			}
			outFile := filepath.Join(t.TempDir(), "github_output")
			os.WriteFile(outFile, nil, 0o644)
			env := append(os.Environ(), "GITHUB_ACTION_PATH="+repoRoot(t), "RUNNER_TEMP="+runnerTemp, "RUNNER_OS=Linux",
				"GITHUB_OUTPUT="+outFile, "GITHUB_RUN_ID=1", "GITHUB_WORKSPACE="+repoRoot(t), "GITHUB_STEP_SUMMARY="+filepath.Join(work, "step-summary.md"))
			keys := make([]string, 0, len(s.Env))
			for k := range s.Env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := expr.ReplaceAllStringFunc(s.Env[k], func(m string) string {
					e := expr.FindStringSubmatch(m)[1]
					switch {
					case e == "runner.temp":
						return runnerTemp
					case strings.HasPrefix(e, "inputs."):
						if _, ok := a.Inputs[strings.TrimPrefix(e, "inputs.")]; !ok {
							t.Fatalf("step %q: env %s uses undeclared %s", s.Name, k, e)
						}
						return in[strings.TrimPrefix(e, "inputs.")]
					}
					t.Fatalf("step %q: env %s: cannot evaluate %s (teach this test)", s.Name, k, e)
					return ""
				})
				env = append(env, k+"="+v)
			}
			if expr.MatchString(s.Run) {
				t.Fatalf("step %q interpolates an expression into its script", s.Name)
			}
			cmd := exec.Command("bash", "-e", "-c", s.Run)
			cmd.Dir = repoRoot(t)
			cmd.Env = env
			log := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = log, log
			err := cmd.Run()
			t.Logf("action step %q (mode %s):\n%s", s.Name, in["mode"], lastLines(log.String(), 25))
			got, _ := os.ReadFile(outFile)
			for _, l := range strings.Split(string(got), "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					outputs[s.ID+"."+k] = v
				}
			}
			if err != nil {
				code := 2
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				if s.ID != "lab" {
					t.Fatalf("step %q failed: %v", s.Name, err)
				}
				return outputs, code
			}
		}
		return outputs, 0
	}

	job := "jobs/highmem-coherency.yaml"
	out, code := action(map[string]string{"mode": "plan", "job": job, "cells": "x86_64/copier"})
	var shards []map[string]any
	if err := json.Unmarshal([]byte(out["lab.shards"]), &shards); code != 0 || err != nil || len(shards) != 1 {
		t.Fatalf("plan: exit %d, shards %q (%v)", code, out["lab.shards"], err)
	}
	shard, _ := json.Marshal(shards[0])
	shardDir := filepath.Join(work, "shards", "kmodlab-shard-x86_64")
	out, code = action(map[string]string{"mode": "shard", "job": job, "shard": string(shard), "out": shardDir,
		"args": strings.Join(rootfsArgs[2:], " ")})
	if code != 0 || out["lab.exit-code"] != "0" || out["lab.results"] != shardDir {
		t.Fatalf("shard: exit %d, outputs %v", code, out)
	}
	merged := filepath.Join(work, "merged")
	out, code = action(map[string]string{"mode": "merge", "job": job, "plan": string(mustJSON(t, shards)),
		"results": filepath.Join(work, "shards"), "out": merged})
	if code != 0 || out["lab.exit-code"] != "0" {
		t.Fatalf("merge: exit %d, outputs %v", code, out)
	}
	r, err := report.Read(filepath.Join(merged, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 1 || r.Cells[0].ID != "x86_64/copier" || !r.Cells[0].Met {
		t.Errorf("merged: %s", r.Details())
	}
	if s, _ := os.ReadFile(filepath.Join(work, "step-summary.md")); !strings.Contains(string(s), "| x86_64 | clean |") {
		t.Errorf("step summary:\n%s", s)
	}
	t.Logf("composite action plan -> shard -> merge:\n%s", r.Matrix())
}

func mustJSON(t *testing.T, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
