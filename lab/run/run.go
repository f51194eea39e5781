// Package run is the lab's pipeline: for each cell of a job it builds (cached), boots or
// attaches a machine, deploys over SSH, sets up, stresses, collects, analyzes and gives
// a verdict. Cells of one target share a machine while it stays healthy; a crash, hang
// or lost connection gets the next cell a fresh one. One cell's failure never stops the
// others, and every machine is released on every path.
package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/canary"
	"github.com/kmodlab/kmodlab/lab/console"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/remote"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/runner"
	"github.com/kmodlab/kmodlab/lab/trace"
)

// Machines gives the pipeline its machines; QEMU targets and boards both.
type Machines interface {
	// Describe says what a target is without starting it.
	Describe(target string) (runner.Info, error)
	// Kbuild says how to cross-build modules for target, or nil when the machine builds
	// natively or uses prebuilt modules.
	Kbuild(ctx context.Context, target string) (*build.Kbuild, error)
	// Acquire returns a ready machine; consoleLog, if set, receives its console.
	Acquire(ctx context.Context, target, consoleLog string) (runner.Runner, error)
}

// Options for one run.
type Options struct {
	Job       *job.Job
	Cells     []job.Cell
	Seed      int64
	Out       string
	Parallel  int
	Vars      map[string]string // --set overrides
	Pins      map[string]string // --pin: hashes a replay must match
	Machines  Machines
	CacheDir  string
	Canary    bool
	Version   string
	Log       *slog.Logger
	Progress  io.Writer
	StrictW1  bool // fail module builds that warn under W=1
	ReplayCmd string
}

// Run runs every selected cell and writes the reports.
func Run(ctx context.Context, o Options) (*report.Run, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	rep := &report.Run{Job: o.Job.Name, JobFile: o.Job.File, Started: time.Now().UTC(), Keys: o.Job.Keys(), Version: o.Version}
	byTarget := map[string][]job.Cell{}
	var targets []string
	for _, c := range o.Cells {
		if _, ok := byTarget[c.Target]; !ok {
			targets = append(targets, c.Target)
		}
		byTarget[c.Target] = append(byTarget[c.Target], c)
	}
	rep.Targets = targets
	results := map[string]*report.Cell{}
	var mu sync.Mutex
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func(t string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p := &targetRun{o: o, target: t}
			for _, c := range p.run(ctx, byTarget[t]) {
				mu.Lock()
				results[c.ID] = c
				mu.Unlock()
			}
		}(t)
	}
	wg.Wait()
	for _, c := range o.Cells {
		rep.Cells = append(rep.Cells, results[c.ID])
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	if err := rep.Write(o.Out); err != nil {
		return rep, fmt.Errorf("write reports: %w", err)
	}
	return rep, nil
}

// targetRun runs the cells of one target on one machine at a time.
type targetRun struct {
	o       Options
	target  string
	info    runner.Info
	mods    map[string][]string // job module name -> built .ko files (cross builds)
	canKO   string
	bins    map[string]string
	modHash string
	canary  *canary.Result
	canErr  string
	r       runner.Runner
	boots   int
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
		for _, c := range cells {
			out = append(out, p.infra(c, fmt.Errorf("build for %s: %w", p.target, err)))
		}
		return out
	}
	defer p.release()
	for _, c := range cells {
		if ctx.Err() != nil {
			out = append(out, p.infra(c, fmt.Errorf("cancelled: %w", ctx.Err())))
			continue
		}
		out = append(out, p.cell(ctx, c, start))
	}
	return out
}

func (p *targetRun) release() {
	if p.r != nil {
		p.r.Close()
		p.r = nil
	}
}

func (p *targetRun) infra(c job.Cell, err error) *report.Cell {
	rc := p.newCell(c)
	rc.Verdict = report.Infra
	rc.Error = err.Error()
	rc.Evidence = append(rc.Evidence, "infrastructure error: "+firstLine(err.Error()))
	rc.Met = false
	return rc
}

func (p *targetRun) newCell(c job.Cell) *report.Cell {
	replay := fmt.Sprintf("kmodlab run %s --cell %s --seed %d", p.o.Job.File, c.ID, p.o.Seed)
	if p.info.ImageHash != "" || p.modHash != "" {
		replay += fmt.Sprintf(" --pin image=%s,module=%s", orDash(p.info.ImageHash), orDash(p.modHash))
	}
	for k, v := range p.o.Vars {
		replay += fmt.Sprintf(" --set %s=%s", k, v)
	}
	return &report.Cell{ID: c.ID, Target: c.Target, Params: c.Params, Expect: c.Expect, Seed: p.o.Seed,
		Replay: replay, Timings: map[string]float64{}, Evidence: []string{}, Runner: p.info.Kind,
		Kernel: p.info.KernelRelease, ImageHash: p.info.ImageHash, ModuleHash: p.modHash, Accel: p.info.Accel,
		LogDir: filepath.Join(p.o.Out, strings.ReplaceAll(c.ID, "/", "_"))}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// buildAll builds the job's modules (cross, when the machine does not build natively),
// the canary, and the Go binaries for the machine's architecture.
func (p *targetRun) buildAll(ctx context.Context) error {
	j := p.o.Job
	p.mods = map[string][]string{}
	p.bins = map[string]string{}
	kb, err := p.o.Machines.Kbuild(ctx, p.target)
	if err != nil {
		return err
	}
	var hashes []string
	for _, m := range j.Build.Modules {
		hashes = append(hashes, build.HashTree(j.Path(m.Dir)))
		if kb == nil {
			continue
		}
		kos, _, err := build.Module(ctx, *kb, j.Path(m.Dir), p.o.CacheDir, p.o.StrictW1)
		if err != nil {
			return err
		}
		p.mods[m.Name] = kos
	}
	p.modHash = strings.Join(hashes, "+")
	if p.o.Canary && kb != nil {
		dir := filepath.Join(p.o.CacheDir, "canary-src", p.target)
		os.MkdirAll(dir, 0o755)
		if err := canary.Extract(dir); err != nil {
			return err
		}
		kos, _, err := build.Module(ctx, *kb, dir, p.o.CacheDir, false)
		if err != nil {
			return fmt.Errorf("canary: %w", err)
		}
		p.canKO = kos[0]
	}
	arch := p.info.GOARCH + p.info.GOARM
	for _, b := range j.Build.Binaries {
		dst := filepath.Join(p.o.CacheDir, "gobin", arch, b.Name)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := build.Go(ctx, j.RootDir(), b.Package, p.info.GOARCH, p.info.GOARM, dst); err != nil {
			return err
		}
		p.bins[b.Name] = dst
	}
	return nil
}

// machine returns a healthy machine with everything deployed, booting or attaching a
// fresh one when needed.
func (p *targetRun) machine(ctx context.Context, c job.Cell, logDir string) (runner.Runner, error) {
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
	p.info = mergeInfo(p.info, r.Info())
	p.o.Log.Info("machine ready", "target", p.target, "kind", p.info.Kind, "seconds", time.Since(t0).Seconds())
	if err := p.deploy(ctx, r); err != nil {
		p.release()
		return nil, fmt.Errorf("deploy to %s: %w", p.target, err)
	}
	if p.o.Canary && p.canary == nil && p.canErr == "" {
		p.runCanary(ctx, r)
	}
	return r, nil
}

func mergeInfo(a, b runner.Info) runner.Info {
	if b.KernelRelease != "" {
		a.KernelRelease = b.KernelRelease
	}
	if b.Accel != "" {
		a.Accel = b.Accel
	}
	if b.ImageHash != "" {
		a.ImageHash = b.ImageHash
	}
	return a
}

func (p *targetRun) deploy(ctx context.Context, r runner.Runner) error {
	dest := p.o.Job.Dest()
	if err := r.Run(ctx, "mkdir -p "+dest, nil, nil); err != nil {
		return err
	}
	for _, kos := range p.mods {
		for _, ko := range kos {
			if err := r.Copy(ctx, ko, dest+"/"+filepath.Base(ko), 0o644); err != nil {
				return err
			}
		}
	}
	if p.canKO != "" {
		if err := r.Copy(ctx, p.canKO, dest+"/kmodlab_canary.ko", 0o644); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(p.bins))
	for n := range p.bins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.Copy(ctx, p.bins[n], dest+"/"+n, 0o755); err != nil {
			return err
		}
	}
	for _, f := range p.o.Job.Build.Files {
		mode := os.FileMode(0o644)
		if f.Mode != "" {
			if m, err := strconv.ParseUint(f.Mode, 8, 32); err == nil {
				mode = os.FileMode(m)
			}
		}
		d := f.Dest
		if d == "" {
			d = dest + "/" + filepath.Base(f.Src)
		}
		if err := r.Copy(ctx, p.o.Job.Path(f.Src), d, mode); err != nil {
			return err
		}
	}
	info := r.Info()
	if info.Build == "native" {
		return p.buildNative(ctx, r)
	}
	if info.Build == "prebuilt" {
		for _, m := range p.o.Job.Build.Modules {
			ko := filepath.Join(info.Prebuilt, m.Name+".ko")
			if err := r.Copy(ctx, ko, dest+"/"+m.Name+".ko", 0o644); err != nil {
				return fmt.Errorf("prebuilt module %s: %w", ko, err)
			}
		}
	}
	return nil
}

// buildNative copies each module's sources to the machine and builds them there
// against its installed headers (boards: e.g. raspberrypi-kernel-headers).
func (p *targetRun) buildNative(ctx context.Context, r runner.Runner) error {
	dest := p.o.Job.Dest()
	for _, m := range p.o.Job.Build.Modules {
		src := p.o.Job.Path(m.Dir)
		rdir := dest + "/kmodlab-src/" + m.Name
		if err := r.Run(ctx, "rm -rf "+rdir+" && mkdir -p "+rdir, nil, nil); err != nil {
			return err
		}
		err := filepath.Walk(src, func(f string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() || strings.HasSuffix(f, ".ko") || strings.HasSuffix(f, ".o") {
				return err
			}
			rel, _ := filepath.Rel(src, f)
			if strings.Contains(rel, "/") {
				if err := r.Run(ctx, "mkdir -p "+rdir+"/"+filepath.Dir(rel), nil, nil); err != nil {
					return err
				}
			}
			return r.Copy(ctx, f, rdir+"/"+rel, 0o644)
		})
		if err != nil {
			return err
		}
		cmd := fmt.Sprintf("make -C /lib/modules/$(uname -r)/build M=%s modules && cp %s/%s.ko %s/", rdir, rdir, m.Name, dest)
		if out, err := runner.Output(ctx, r, cmd); err != nil {
			return fmt.Errorf("native build of %s: %w\n%s", m.Name, err, out)
		}
	}
	return nil
}

func (p *targetRun) runCanary(ctx context.Context, r runner.Runner) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	dest := p.o.Job.Dest()
	out, err := runner.Output(ctx, r, fmt.Sprintf("insmod %s/kmodlab_canary.ko iterations=2000 && rmmod kmodlab_canary; dmesg | grep kmodlab-canary | tail -n 1", dest))
	if err != nil {
		p.canErr = err.Error()
		p.o.Log.Warn("canary failed", "target", p.target, "err", err)
		return
	}
	res, err := canary.Parse(out)
	if err != nil {
		p.canErr = err.Error()
		return
	}
	p.canary = res
	p.o.Log.Info("canary", "target", p.target, "state", res.State, "stale", res.Local, "of", res.Iterations, "kmap_stale", res.Kmap)
}

// cellState carries one cell's collected evidence.
type cellState struct {
	hung      bool
	lost      bool
	stepErr   []string // setup, collect and lab problems: the cell cannot be judged
	stressErr []string // stress steps that failed: evidence, judged with the rest
	stress    report.Stress
	haveStres bool
}

func (p *targetRun) cell(ctx context.Context, c job.Cell, start time.Time) *report.Cell {
	rc := p.newCell(c)
	os.MkdirAll(rc.LogDir, 0o755)
	t0 := time.Now()
	p.progress(c.ID, "machine", start)
	r, err := p.machine(ctx, c, rc.LogDir)
	rc.Timings["machine"] = time.Since(t0).Seconds()
	if err != nil {
		rc = p.infra(c, err)
		rc.Timings["machine"] = time.Since(t0).Seconds()
		os.MkdirAll(rc.LogDir, 0o755)
		writeIfText(filepath.Join(rc.LogDir, "error.txt"), err.Error())
		return rc
	}
	rc.Kernel, rc.ImageHash, rc.Accel, rc.Runner = p.info.KernelRelease, p.info.ImageHash, p.info.Accel, p.info.Name
	rc.Replay = p.newCell(c).Replay
	if p.canary != nil {
		rc.Canary = fmt.Sprintf("%s (stale %d/%d via kmap_local_page, %d/%d via kmap)", p.canary.State, p.canary.Local, p.canary.Iterations, p.canary.Kmap, p.canary.Iterations)
	} else if p.canErr != "" {
		rc.Canary = "failed: " + firstLine(p.canErr)
	}
	p.checkPins(rc)
	conOff := 0
	if l := r.Log(); l != nil {
		conOff = l.Len()
	}
	marker := fmt.Sprintf("kmodlab: cell %s seed %d begin %d", c.ID, p.o.Seed, time.Now().UnixNano())
	r.Run(ctx, fmt.Sprintf("echo '%s' > /dev/kmsg", marker), nil, nil)

	st := &cellState{stress: report.Stress{FirstMS: -1}}
	extra := map[string]string{}
	for k, v := range p.o.Vars {
		extra[k] = v
	}
	phase := func(name string, steps []job.Step, def time.Duration) {
		t := time.Now()
		p.progress(c.ID, name, start)
		for i, s := range steps {
			if st.lost || st.hung {
				break
			}
			p.step(ctx, r, c, rc, st, name, i, s, def, extra)
		}
		rc.Timings[name] = time.Since(t).Seconds()
	}
	to := p.o.Job.Timeouts
	phase("setup", p.o.Job.Setup, to.Setup.D(90*time.Second))
	if len(st.stepErr) == 0 {
		phase("stress", p.o.Job.Stress, to.Stress.D(5*time.Minute))
	}
	p.progress(c.ID, "collect", start)
	t := time.Now()
	kern := p.collect(ctx, r, c, rc, st, marker, to.Collect.D(90*time.Second), extra)
	con := ""
	if l := r.Log(); l != nil {
		con = l.Since(conOff)
		writeIfText(filepath.Join(rc.LogDir, "console.log"), con)
	}
	rc.Timings["collect"] = time.Since(t).Seconds()
	if !st.lost && !st.hung {
		phase("teardown", p.o.Job.Teardown, to.Setup.D(90*time.Second))
	}
	p.analyze(rc, st, kern, con)
	if st.lost || st.hung || rc.Verdict == report.Crashed || len(st.stepErr) > 0 {
		// Whatever the machine went through, the next cell gets a fresh one.
		p.release()
	}
	rc.Met = report.Meets(rc.Verdict, rc.Expect) && !strings.Contains(strings.Join(rc.Evidence, "\n"), "pin mismatch")
	p.progress(c.ID, rc.Verdict, start)
	return rc
}

func (p *targetRun) checkPins(rc *report.Cell) {
	for k, want := range p.o.Pins {
		got := map[string]string{"image": rc.ImageHash, "module": rc.ModuleHash, "kernel": rc.Kernel}[k]
		if want != "-" && got != want {
			rc.Evidence = append(rc.Evidence, fmt.Sprintf("pin mismatch: %s was %s when recorded, is %s now", k, want, orDash(got)))
		}
	}
}

// step runs one step and records what went wrong.
func (p *targetRun) step(ctx context.Context, r runner.Runner, c job.Cell, rc *report.Cell, st *cellState,
	phase string, i int, s job.Step, def time.Duration, extra map[string]string) {
	name := s.Name
	if name == "" {
		name = fmt.Sprintf("%s%d", phase, i)
	}
	cmd, err := p.o.Job.Expand(s.Run, c, p.o.Seed, extra)
	if err != nil {
		st.stepErr = append(st.stepErr, err.Error())
		return
	}
	dest := p.o.Job.Dest()
	timeout := s.Timeout.D(def)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logf, _ := os.Create(filepath.Join(rc.LogDir, phase+"-"+name+".log"))
	if logf != nil {
		defer logf.Close()
		fmt.Fprintf(logf, "$ %s\n", cmd)
	}
	var w io.Writer = io.Discard
	if logf != nil {
		w = logf
	}
	if s.Report != "" {
		if rp, err := p.o.Job.Expand(s.Report, c, p.o.Seed, extra); err == nil {
			r.Run(sctx, "rm -f "+shQuote(rp), nil, nil) // never read a previous cell's report
		}
	}
	// A kernel crash during the step: give the machine a few seconds to print the rest,
	// then stop waiting for a step that may never finish.
	var crashed atomic.Bool
	if l := r.Log(); l != nil {
		off := l.Len()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if console.Fatal(console.Find(l.Since(off))) {
						select {
						case <-stop:
						case <-time.After(8 * time.Second):
							crashed.Store(true)
							cancel()
						}
						return
					}
				}
			}
		}()
	}
	if s.Background {
		bg := fmt.Sprintf("setsid sh -c %s > %s/%s.log 2>&1 < /dev/null &", shQuote(cmd), dest, name)
		err = r.Run(sctx, bg, w, w)
		if err == nil && s.Ready != "" {
			ready, _ := p.o.Job.Expand(s.Ready, c, p.o.Seed, extra)
			err = poll(sctx, r, ready)
		}
	} else {
		err = r.Run(sctx, cmd, w, w)
	}
	if err != nil && !s.IgnoreFail {
		msg := fmt.Sprintf("%s step %q: %v", phase, name, err)
		switch {
		case errors.Is(err, remote.ErrConnectionLost):
			st.lost = true
		case crashed.Load():
			st.hung = true
			msg = fmt.Sprintf("%s step %q was stopped: the kernel crashed under it", phase, name)
		case sctx.Err() != nil && ctx.Err() == nil:
			st.hung = true
			msg = fmt.Sprintf("%s step %q did not finish within %s", phase, name, timeout)
		}
		if phase == "stress" && !st.lost && !st.hung {
			st.stressErr = append(st.stressErr, msg)
		} else {
			st.stepErr = append(st.stepErr, msg)
		}
	}
	if s.Report != "" && !st.lost && !st.hung {
		rp, _ := p.o.Job.Expand(s.Report, c, p.o.Seed, extra)
		p.readStress(ctx, r, rc, st, name, rp)
	}
}

func poll(ctx context.Context, r runner.Runner, cmd string) error {
	for {
		err := r.Run(ctx, cmd, nil, nil)
		if err == nil {
			return nil
		}
		if errors.Is(err, remote.ErrConnectionLost) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ready check %q never succeeded: %w", cmd, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// stressReport is the part of a stress tool's JSON report the lab reads; any tool that
// writes these fields works.
type stressReport struct {
	Reads      int64   `json:"reads"`
	Writes     int64   `json:"writes"`
	IOErrors   int64   `json:"io_errors"`
	Mismatches int     `json:"mismatches"`
	FirstMS    int64   `json:"first_mismatch_ms"`
	Seconds    float64 `json:"seconds"`
	Details    []struct {
		Block   int64  `json:"block"`
		Path    string `json:"path"`
		WantCRC string `json:"want_crc"`
		SeenCRC string `json:"seen_crc"`
		Holds   string `json:"holds"`
		WantGen uint64 `json:"want_gen"`
	} `json:"details"`
}

func (p *targetRun) readStress(ctx context.Context, r runner.Runner, rc *report.Cell, st *cellState, step, file string) {
	var buf bytes.Buffer
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.Fetch(fctx, file, &buf); err != nil {
		st.stepErr = append(st.stepErr, fmt.Sprintf("stress report %s: %v", file, err))
		return
	}
	os.WriteFile(filepath.Join(rc.LogDir, "stress-"+step+".json"), buf.Bytes(), 0o644)
	var sr stressReport
	if err := json.Unmarshal(buf.Bytes(), &sr); err != nil {
		st.stepErr = append(st.stepErr, fmt.Sprintf("stress report %s: %v", file, err))
		return
	}
	s := &st.stress
	st.haveStres = true
	s.Reads += sr.Reads
	s.Writes += sr.Writes
	s.IOErrors += sr.IOErrors
	s.Seconds += sr.Seconds
	if sr.Mismatches > 0 && s.Mismatches == 0 {
		s.FirstMS, s.FirstStep = sr.FirstMS, step
		if len(sr.Details) > 0 {
			d := sr.Details[0]
			s.Example = fmt.Sprintf("block %d: wanted gen %d crc %s, read crc %s, which holds %s", d.Block, d.WantGen, d.WantCRC, d.SeenCRC, d.Holds)
		}
	}
	s.Mismatches += sr.Mismatches
}

// collect gathers the kernel log since the cell's marker and the job's files.
func (p *targetRun) collect(ctx context.Context, r runner.Runner, c job.Cell, rc *report.Cell, st *cellState,
	marker string, timeout time.Duration, extra map[string]string) string {
	if st.lost {
		return ""
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var kb bytes.Buffer
	if err := r.Run(cctx, "dmesg", &kb, io.Discard); err != nil {
		if errors.Is(err, remote.ErrConnectionLost) {
			st.lost = true
		}
		st.stepErr = append(st.stepErr, "collect dmesg: "+err.Error())
	}
	kern := kb.String()
	if i := strings.LastIndex(kern, marker); i >= 0 {
		if j := strings.LastIndex(kern[:i], "\n"); j >= 0 {
			kern = kern[j+1:]
		} else {
			kern = kern[i:]
		}
	}
	writeIfText(filepath.Join(rc.LogDir, "kern.log"), kern)
	files := append([]string(nil), p.o.Job.Collect...)
	for i, s := range p.o.Job.Setup {
		if s.Background {
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("setup%d", i)
			}
			files = append(files, p.o.Job.Dest()+"/"+name+".log")
		}
	}
	for _, f := range files {
		path, err := p.o.Job.Expand(f, c, p.o.Seed, extra)
		if err != nil {
			continue
		}
		var b bytes.Buffer
		if err := r.Fetch(cctx, path, &b); err == nil {
			os.WriteFile(filepath.Join(rc.LogDir, filepath.Base(path)), b.Bytes(), 0o644)
		}
	}
	return kern
}

var tsRe = regexp.MustCompile(`^\[\s*(\d+)\.(\d{6})\]`)

// analyze turns the evidence into a verdict.
func (p *targetRun) analyze(rc *report.Cell, st *cellState, kern, con string) {
	tr := trace.AnalyzeString(kern)
	rc.Trace = &report.TraceSummary{Transactions: tr.Transactions, Reads: tr.Reads, Writes: tr.Writes,
		Diverged: tr.Diverged(), Unparsed: tr.Unparsed, Kinds: map[string]int{}}
	var t0 int64 = -1
	for _, l := range strings.SplitN(kern, "\n", 3) {
		if ts := stamp(l); ts >= 0 {
			t0 = ts
			break
		}
	}
	for i, d := range tr.Divergences {
		rc.Trace.Kinds[d.Kind]++
		if i == 0 {
			first := d
			rc.Trace.First = &first
			rc.Trace.FirstTable = trace.Table(d.Events)
		}
		if t0 >= 0 {
			if ts := stamp(d.Events[0].Raw); ts >= 0 {
				rc.Divergences = append(rc.Divergences, ts-t0)
			}
		}
	}
	if st.haveStres {
		s := st.stress
		rc.Stress = &s
	}
	crashes := console.Find(kern + "\n" + con)
	var crash *console.Report
	if console.Fatal(crashes) {
		crash = console.First(crashes)
		rc.Crash = crash
	}
	ev := &rc.Evidence
	if tr.Diverged() > 0 {
		*ev = append(*ev, fmt.Sprintf("trace: %d of %d transactions diverged (%s)", tr.Diverged(), tr.Transactions, kinds(rc.Trace.Kinds)))
	} else if tr.Transactions > 0 {
		*ev = append(*ev, fmt.Sprintf("trace: %d transactions (%d reads, %d writes checked), none diverged", tr.Transactions, tr.Reads, tr.Writes))
	}
	if rc.Stress != nil {
		s := rc.Stress
		if s.Mismatches > 0 {
			*ev = append(*ev, fmt.Sprintf("data: %d blocks read back wrong (first after %d ms of %s stress); %s", s.Mismatches, s.FirstMS, s.FirstStep, s.Example))
		} else {
			*ev = append(*ev, fmt.Sprintf("data: %d reads, %d writes, all intact", s.Reads, s.Writes))
		}
		if s.IOErrors > 0 {
			*ev = append(*ev, fmt.Sprintf("data: %d I/O errors", s.IOErrors))
		}
	}
	if crash != nil {
		*ev = append(*ev, "crash: "+crash.Title)
	}
	if rc.Canary != "" {
		*ev = append(*ev, "canary: "+rc.Canary)
	}
	for _, e := range append(st.stressErr, st.stepErr...) {
		*ev = append(*ev, e)
	}
	if len(st.stressErr) > 0 && !st.haveStres && tr.Transactions == 0 {
		st.stepErr = append(st.stepErr, st.stressErr...) // nothing to judge by
	}
	diverged := tr.Diverged() > 0 || (rc.Stress != nil && rc.Stress.Mismatches > 0)
	switch {
	case crash != nil:
		rc.Verdict = report.Crashed
	case st.hung && con != "" && len(console.Find(con)) > 0:
		rc.Verdict = report.Crashed
	case st.hung:
		rc.Verdict = report.Hung
	case diverged:
		rc.Verdict = report.Reproduced
	case st.lost || len(st.stepErr) > 0:
		rc.Verdict = report.Infra
		rc.Error = strings.Join(st.stepErr, "\n")
	case p.canary != nil && p.canary.State == canary.Negative:
		rc.Verdict = report.CannotDetect
	default:
		rc.Verdict = report.Clean
	}
}

func stamp(l string) int64 {
	if i := strings.Index(l, "["); i > 0 {
		l = l[i:]
	}
	m := tsRe.FindStringSubmatch(strings.TrimSpace(l))
	if m == nil {
		return -1
	}
	s, _ := strconv.ParseInt(m[1], 10, 64)
	us, _ := strconv.ParseInt(m[2], 10, 64)
	return s*1000 + us/1000
}

func kinds(m map[string]int) string {
	var k []string
	for n, c := range m {
		k = append(k, fmt.Sprintf("%d %s", c, n))
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func writeIfText(file, text string) {
	os.WriteFile(file, []byte(text), 0o644)
}
