package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/canary"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/report"
)

// targetRun runs the cells of one target on one machine at a time.
type targetRun struct {
	o        Options
	target   string
	info     runner.Info
	strategy build.Strategy
	modHash  string
	hostKOs  map[string]string // module name -> the .ko on the host (symbolizing), when known
	bins     map[string]string // Go binaries for the machine's architecture
	agent    string            // the kernel-log agent for the machine's architecture
	canSrc   string            // canary sources, extracted
	canary   verdict.Canary
	build    *report.Build // the job's module builds: warnings, time
	highmem  bool
	r        runner.Runner
	boots    int

	batchFiles []runner.CellFile // a batch kind's cell files (batch.go)
}

func (p *targetRun) progress(cell, phase string, start time.Time) {
	fmt.Fprintf(p.o.Progress, "[%6.1fs] %-22s %s\n", time.Since(start).Seconds(), cell, phase)
}

func (p *targetRun) run(ctx context.Context, cells []job.Cell) []*report.Cell {
	var out []*report.Cell
	start := time.Now()
	info, err := p.o.Machines.Describe(p.target)
	if err == nil {
		p.info = info
		p.progress(p.target, "build", start)
		err = p.buildAll(ctx)
	}
	if err != nil {
		var be *buildError
		for _, c := range cells {
			if errors.As(err, &be) {
				out = append(out, p.buildFailedCell(c, be))
				continue
			}
			out = append(out, p.infraCell(c, fmt.Errorf("build for %s: %w", p.target, err)))
		}
		return out
	}
	defer p.release(ctx, "")
	if p.batchOf() != nil {
		return p.runBatch(ctx, cells, start) // batch.go
	}
	for _, c := range cells {
		if ctx.Err() != nil {
			out = append(out, p.infraCell(c, fmt.Errorf("cancelled: %w", ctx.Err())))
			continue
		}
		out = append(out, p.cell(ctx, c, start))
	}
	return out
}

// release gives the machine back. A reason means the machine was left broken: a
// machine that can be reset in place (a board) is reset, any other is closed and the
// next cell gets a fresh one.
func (p *targetRun) release(ctx context.Context, reason string) {
	if p.r == nil {
		return
	}
	r := p.r
	p.r = nil
	if rs, ok := r.(runner.Resetter); ok && reason != "" {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if err := rs.Reset(rctx, reason); err != nil {
			p.o.Log.Warn("reset failed", "target", p.target, "reason", reason, "err", err)
		}
		return
	}
	r.Close()
}

func (p *targetRun) infraCell(c job.Cell, err error) *report.Cell {
	rc := p.newCell(c)
	rc.Verdict = verdict.Infra
	rc.Error = err.Error()
	rc.Evidence = append(rc.Evidence, "infrastructure error: "+firstLine(err.Error()))
	rc.Reasons = []string{firstLine(err.Error())}
	rc.Met = false
	os.MkdirAll(rc.LogDir, 0o755)
	os.WriteFile(filepath.Join(rc.LogDir, "error.txt"), []byte(err.Error()), 0o644)
	return rc
}

func (p *targetRun) newCell(c job.Cell) *report.Cell {
	replay := fmt.Sprintf("kmodlab run %s --cell %s --seed %d", p.o.Job.File, c.ID, p.o.Seed)
	switch {
	case p.batchOf() != nil:
		// A lab's device (LAVA) boots the lab's kernel, not a kmodlab image, and may be
		// any device of its type: what pins the cell is the module built and the kernel
		// release it was built for (the device's must be that one for it to load), and
		// the image only when the lab deploys kmodlab's own. The entry it was sent to
		// comes with it (the replay needs the same runners.yaml).
		var pin []string
		for _, kv := range [][2]string{{"image", p.info.ImageHash}, {"kernel", p.info.KernelRelease}, {"module", p.modHash}} {
			if kv[1] != "" {
				pin = append(pin, kv[0]+"="+kv[1])
			}
		}
		if len(pin) > 0 {
			replay += " --pin " + job.ShellWord(strings.Join(pin, ","))
		}
		if p.info.Name != "" && p.info.Name != c.Target {
			replay += " --lava " + job.ShellWord(c.Target+"="+p.info.Name)
		}
	case p.info.ImageHash != "" || p.modHash != "":
		replay += fmt.Sprintf(" --pin image=%s,module=%s", orDash(p.info.ImageHash), orDash(p.modHash))
	}
	keys := make([]string, 0, len(p.o.Vars))
	for k := range p.o.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// The replay line is copied into a host shell: a value is one word there.
		replay += " --set " + job.ShellWord(k+"="+p.o.Vars[k])
	}
	if p.o.Repeat > 1 {
		replay += fmt.Sprintf(" --repeat %d", p.o.Repeat)
	}
	if p.o.Full {
		replay += " --full"
	}
	rc := &report.Cell{ID: c.ID, Target: c.Target, Params: c.Params, Expect: c.Expect, Seed: p.o.Seed,
		Replay: replay, Timings: map[string]float64{}, Evidence: []string{}, Runner: string(p.info.Kind),
		Kernel: p.info.KernelRelease, ImageHash: p.info.ImageHash, ModuleHash: p.modHash, Accel: p.info.Accel,
		Outcome: report.Outcome{LogDir: filepath.Join(p.o.Out, strings.ReplaceAll(c.ID, "/", "_")), FirstDivergenceMS: -1, StopMS: -1}}
	if p.build != nil {
		b := *p.build
		rc.Build = &b
		if s := b.WarningSummary(); s != "" {
			rc.Evidence = append(rc.Evidence, "build: "+s)
		}
	}
	return rc
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// buildAll prepares what the machine will need: the modules (built now where the
// strategy builds on the host), the canary's sources, the Go binaries and the
// kernel-log agent for the machine's architecture.
func (p *targetRun) buildAll(ctx context.Context) error {
	j := p.o.Job
	p.hostKOs = map[string]string{}
	p.bins = map[string]string{}
	s, err := p.o.Machines.Strategy(ctx, p.target, p.o.CacheDir, p.o.StrictW1 || j.Build.Strict)
	if err != nil {
		piece := verdict.PieceLab
		if p.info.Kind == runner.KindQEMU {
			piece = verdict.PieceHeaders // a QEMU target's strategy is its cached headers
		}
		return labError(piece, err)
	}
	p.strategy = s
	var hashes []string
	for _, m := range j.Build.Modules {
		h, err := s.Prepare(ctx, m.Name, j.Path(m.Dir))
		if r, ok := s.(interface{ Result(string) *build.Result }); ok {
			p.noteBuild(m.Name, r.Result(m.Name))
		}
		if err != nil {
			return moduleError(m, err)
		}
		hashes = append(hashes, shortHash(h))
	}
	p.modHash = strings.Join(hashes, "+")
	if p.o.Canary {
		dir := filepath.Join(p.o.CacheDir, "canary-src", p.target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := canary.Extract(dir); err != nil {
			return err
		}
		p.canSrc = dir
		if _, err := s.Prepare(ctx, canary.Module, dir); err != nil {
			// A canary that cannot be built is a finding about the machine, not a
			// reason to stop: its cells cannot be called clean (CANNOT-DETECT).
			p.canary = verdict.Canary{State: verdict.CanarySkipped, Detail: "canary not built: " + firstLine(err.Error())}
			p.canSrc = ""
		}
	} else {
		p.canary = verdict.Canary{State: verdict.CanaryDisabled}
	}
	arch := p.info.GOARCH + p.info.GOARM
	for _, b := range j.Build.Binaries {
		dst := filepath.Join(p.o.CacheDir, "gobin", arch, b.Name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := build.Go(ctx, j.RootDir(), b.Package, p.info.GOARCH, p.info.GOARM, dst); err != nil {
			return binaryError(b, err)
		}
		p.bins[b.Name] = dst
	}
	p.agent, err = kmsg.BuildAgent(ctx, p.o.CacheDir, p.info.GOARCH, p.info.GOARM)
	if err != nil {
		return labError(verdict.PieceAgent, err)
	}
	return nil
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// machine returns a healthy machine with everything deployed, booting or attaching a
// fresh one when needed.
func (p *targetRun) machine(ctx context.Context, logDir string) (runner.Runner, error) {
	if p.r != nil {
		return p.r, nil
	}
	t0 := time.Now()
	r, err := p.o.Machines.Acquire(ctx, p.target, filepath.Join(logDir, "console-boot.log"))
	if err != nil {
		return nil, err
	}
	p.boots++
	p.r = r
	p.info = r.Info() // what Describe said, and what only the live machine knows
	p.o.Log.Info("machine ready", "target", p.target, "kind", p.info.Kind, "seconds", time.Since(t0).Seconds())
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // deploy and native builds
	defer cancel()
	if err := p.deploy(dctx, r); err != nil {
		p.release(ctx, "")
		var be *buildError
		if errors.As(err, &be) {
			return nil, be
		}
		return nil, fmt.Errorf("deploy to %s: %w", p.target, err)
	}
	p.highmem = highmem(dctx, r)
	if p.o.Canary && p.canary.State == "" {
		p.runCanary(ctx, r)
	}
	return r, nil
}

// deploy puts the job's modules, binaries and files, the canary and the kernel-log
// agent on the machine. Modules go through the machine's build strategy.
func (p *targetRun) deploy(ctx context.Context, r runner.Runner) error {
	j := p.o.Job
	dest := j.Dest()
	if err := r.Run(ctx, "mkdir -p "+runner.Quote(dest), nil, nil); err != nil {
		return err
	}
	for _, m := range j.Build.Modules {
		ko, err := p.strategy.Install(ctx, r, m.Name, j.Path(m.Dir), dest)
		var bf *build.Failure
		if errors.As(err, &bf) {
			return moduleError(m, err) // built on the machine, and it does not build
		}
		if err != nil {
			return err
		}
		if ko != "" {
			p.hostKOs[m.Name] = ko
		}
	}
	if p.canSrc != "" {
		if _, err := p.strategy.Install(ctx, r, canary.Module, p.canSrc, dest); err != nil {
			p.canary = verdict.Canary{State: verdict.CanarySkipped, Detail: "canary not installed: " + firstLine(err.Error())}
		}
	}
	names := make([]string, 0, len(p.bins))
	for n := range p.bins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := copyRetry(ctx, r, p.bins[n], path.Join(dest, n), 0o755); err != nil {
			return err
		}
	}
	if err := copyRetry(ctx, r, p.agent, path.Join(dest, kmsg.AgentName), 0o755); err != nil {
		return err
	}
	for _, f := range j.Build.Files {
		mode := os.FileMode(0o644)
		if f.Mode != "" {
			if m, err := strconv.ParseUint(f.Mode, 8, 32); err == nil {
				mode = os.FileMode(m)
			}
		}
		d := f.Dest
		if d == "" {
			d = path.Join(dest, filepath.Base(f.Src))
		}
		if err := r.Copy(ctx, j.Path(f.Src), d, mode); err != nil {
			return err
		}
	}
	return nil
}

// copyRetry copies a file, once more when the SSH server ended the copy's session
// without an exit status (seen with dropbear right after a machine was restored); a
// copy is idempotent, a lost connection is not retried.
func copyRetry(ctx context.Context, r runner.Runner, local, remote string, mode os.FileMode) error {
	err := r.Copy(ctx, local, remote, mode)
	if err != nil && !errors.Is(err, runner.ErrConnectionLost) && ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		err = r.Copy(ctx, local, remote, mode)
	}
	return err
}

// highmem reads whether the machine's kernel has HIGHMEM memory (HighTotal > 0).
func highmem(ctx context.Context, r runner.Runner) bool {
	out, err := runner.Output(ctx, r, "grep HighTotal /proc/meminfo || true")
	if err != nil {
		return false
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return false
	}
	kb, _ := strconv.ParseInt(f[1], 10, 64)
	return kb > 0
}

// runCanary loads the canary once per target and records what it showed.
func (p *targetRun) runCanary(ctx context.Context, r runner.Runner) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ko := path.Join(p.o.Job.Dest(), canary.Module+".ko")
	out, err := runner.Output(ctx, r, fmt.Sprintf("insmod %s iterations=2000 && { cat /proc/kmodlab_canary; rmmod %s; }; dmesg | grep kmodlab-canary | tail -n 1", runner.Quote(ko), canary.Module))
	if err != nil {
		p.canary = verdict.Canary{State: verdict.CanaryFailed, Detail: firstLine(err.Error())}
		p.o.Log.Warn("canary failed", "target", p.target, "err", err)
		return
	}
	res, err := canary.Parse(out)
	if err != nil {
		p.canary = verdict.Canary{State: verdict.CanaryFailed, Detail: err.Error()}
		return
	}
	p.canary = verdict.Canary{State: res.State, Detail: res.Detail()}
	p.o.Log.Info("canary", "target", p.target, "state", res.State, "consumer_stale", res.UserLocal, "kthread_stale", res.Local, "of", res.Iterations, "kmap_stale", res.Kmap+res.UserKmap)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
