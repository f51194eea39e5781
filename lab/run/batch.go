package run

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/canary"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/trace"
)

// A batch kind (runner.Batch: a LAVA lab) takes a cell only whole: the pipeline
// hands it the cell as one job (the files its deploy would copy, the steps in order,
// with the lab's own reads around them) and judges what came back through the same
// follower, evidence and verdict code as an interactive cell. It cannot stop early.

// batchOf is the batch side of the target's kind, nil for an interactive kind.
func (p *targetRun) batchOf() runner.Batch {
	if m, ok := p.o.Machines.(interface{ Batch(string) runner.Batch }); ok {
		return m.Batch(p.target)
	}
	return nil
}

// The lab's own steps in a batch cell (phase "lab" and "collect" always run).
const (
	batchHighmem  = "highmem"
	batchCanary   = "canary"
	batchKmsgFrom = "kmsg-start"
	batchAddrs    = "module-addresses"
	batchUptime   = "stress-start"
	batchKmsg     = "kmsg"
)

// recorder is the machine a batch cell's deploy talks to: it runs nothing and
// records the copies, which become the job's files.
type recorder struct {
	info  runner.Info
	files []runner.CellFile
}

func (r *recorder) Info() runner.Info { return r.info }
func (r *recorder) Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error {
	if strings.HasPrefix(cmd, "mkdir -p ") {
		return nil // the archive makes its directories
	}
	return fmt.Errorf("a %s target takes whole jobs: cannot run %q before the job (build: native is not possible there)", r.info.Kind, cmd)
}
func (r *recorder) Copy(ctx context.Context, local, remote string, mode os.FileMode) error {
	r.files = append(r.files, runner.CellFile{Local: local, Remote: remote, Mode: mode})
	return nil
}
func (r *recorder) Fetch(ctx context.Context, remote string, w io.Writer) error {
	return fmt.Errorf("a batch machine has no files before its job ran")
}
func (r *recorder) Log() runner.Log { return nil }
func (r *recorder) Close() error    { return nil }

// runBatch runs a batch kind's cells, up to its limit in flight at once. Each cell
// may land on another device of the lab: each has its own canary and HIGHMEM reading
// (a copy of the target's state); the files are gathered once, through the same
// deploy an interactive machine gets.
func (p *targetRun) runBatch(ctx context.Context, cells []job.Cell, start time.Time) []*report.Cell {
	out := make([]*report.Cell, len(cells))
	rec := &recorder{info: p.info}
	if err := p.deploy(ctx, rec); err != nil {
		for i, c := range cells {
			out[i] = p.infraCell(c, fmt.Errorf("gather the files of %s: %w", p.target, err))
		}
		return out
	}
	p.batchFiles = rec.files
	limit := 1
	if m, ok := p.o.Machines.(interface{ InFlight(string) int }); ok && m.InFlight(p.target) > 0 {
		limit = m.InFlight(p.target)
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, c := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				out[i] = p.infraCell(c, fmt.Errorf("cancelled: %w", ctx.Err()))
				return
			}
			pc := *p // this cell's canary and HIGHMEM
			out[i] = pc.cell(ctx, c, start)
		}()
	}
	wg.Wait()
	return out
}

// cellJob makes the cell one whole job.
func (p *targetRun) cellJob(ctx context.Context, c job.Cell, logDir string, extra map[string]string) (runner.CellJob, map[int]job.Step, error) {
	j, seed := p.o.Job, p.o.Seed
	cj := runner.CellJob{Target: p.target, Cell: c.ID, Files: p.batchFiles, LogDir: logDir}
	agent := path.Join(j.Dest(), kmsg.AgentName)
	orig := map[int]job.Step{}
	add := func(phase, name, cmd string, timeout time.Duration, bg bool) {
		cj.Steps = append(cj.Steps, runner.CellStep{Phase: phase, Name: name, Cmd: cmd, Timeout: timeout, Background: bg})
	}
	add("lab", batchHighmem, "grep HighTotal /proc/meminfo || true", 30*time.Second, false)
	if p.o.Canary && p.canary.State == "" {
		ko := path.Join(j.Dest(), canary.Module+".ko")
		add("lab", batchCanary, fmt.Sprintf("insmod %s iterations=2000 && { cat /proc/kmodlab_canary; rmmod %s; }; dmesg | grep kmodlab-canary | tail -n 1", runner.Quote(ko), canary.Module), 2*time.Minute, false)
	}
	add("lab", batchKmsgFrom, agent+" last > /tmp/kmodlab-kmsg-start && cat /tmp/kmodlab-kmsg-start", 30*time.Second, false)
	to := j.Timeouts
	phase := func(name string, steps []job.Step, def time.Duration) error {
		for i, s := range steps {
			n := s.Name
			if n == "" {
				n = fmt.Sprintf("%s%d", name, i)
			}
			cmd, err := j.Expand(s.Command(), c, seed, extra)
			if err != nil {
				return fmt.Errorf("%s step %q: %w", name, n, err)
			}
			if s.Report != "" {
				rep, err := j.ExpandPath(s.Report, c, seed, extra)
				if err != nil {
					return fmt.Errorf("%s step %q: %w", name, n, err)
				}
				cmd = "rm -f " + runner.Quote(rep) + "; " + cmd
				cj.Fetch = append(cj.Fetch, rep)
			}
			orig[len(cj.Steps)] = s
			if s.Background {
				cmd = fmt.Sprintf("%s > %s/%s.log 2>&1", cmd, j.Dest(), n)
				cj.Fetch = append(cj.Fetch, j.Dest()+"/"+n+".log")
			}
			add(name, n, cmd, s.Timeout.D(def), s.Background)
			if s.Background && s.Ready != "" {
				ready, _ := j.Expand(s.Ready, c, seed, extra)
				add(name, n+"-ready", "until "+ready+"; do sleep 0.3; done", s.Timeout.D(def), false)
			}
		}
		return nil
	}
	if err := phase("setup", j.Setup, to.Setup.D(90*time.Second)); err != nil {
		return cj, nil, err
	}
	var mods []string
	for _, m := range j.Build.Modules {
		mods = append(mods, runner.Quote(m.Name))
	}
	if len(mods) > 0 {
		add("lab", batchAddrs, "for m in "+strings.Join(mods, " ")+"; do echo \"$m $(cat /sys/module/$m/sections/.text 2>/dev/null)\"; done", 30*time.Second, false)
	}
	add("lab", batchUptime, "cat /proc/uptime", 30*time.Second, false)
	if err := phase("stress", j.Stress, to.Stress.D(5*time.Minute)); err != nil {
		return cj, nil, err
	}
	if err := phase("teardown", j.Teardown, to.Setup.D(90*time.Second)); err != nil {
		return cj, nil, err
	}
	add("collect", batchKmsg, agent+` read -from $(( $(cat /tmp/kmodlab-kmsg-start) + 1 ))`, to.Collect.D(90*time.Second), false)
	for _, f := range j.Collect {
		if p, err := j.ExpandPath(f, c, seed, extra); err == nil {
			cj.Fetch = append(cj.Fetch, p)
		}
	}
	return cj, orig, nil
}

// batchOnce runs the cell once as a whole job and judges what came back: the job's
// log becomes a Collected (collectBatch), judged and recorded like any cell's.
func (p *targetRun) batchOnce(ctx context.Context, b runner.Batch, c job.Cell, start time.Time, rep int) (*report.Cell, verdict.Decision) {
	rc := p.newCell(c)
	if p.o.Repeat > 1 {
		rc.LogDir = filepath.Join(rc.LogDir, fmt.Sprintf("run%02d", rep))
	}
	os.MkdirAll(rc.LogDir, 0o755)
	extra := map[string]string{}
	for k, v := range p.o.Vars {
		extra[k] = v
	}
	infra := func(err error) (*report.Cell, verdict.Decision) {
		ic := p.infraCell(c, err)
		ic.LogDir = rc.LogDir
		return ic, verdict.Decision{Verdict: verdict.Infra, Reasons: ic.Reasons}
	}
	cj, orig, err := p.cellJob(ctx, c, rc.LogDir, extra)
	if err != nil {
		return infra(fmt.Errorf("make the cell one job: %w", err))
	}
	t0 := time.Now()
	p.progress(c.ID, "job", start)
	got, err := b.RunCell(ctx, cj)
	rc.Timings["job"] = time.Since(t0).Seconds()
	if err != nil {
		return infra(err)
	}
	rc.Kernel, rc.ImageHash, rc.Runner = p.info.KernelRelease, p.info.ImageHash, string(p.info.Kind)
	rc.Replay = p.newCell(c).Replay
	col := p.collectBatch(rc.LogDir, c, extra, cj, orig, got)
	rc.Highmem = p.highmem
	j := p.judge(c, col)
	// Where it ran, and why it did not stop early, come first in the evidence.
	j.Notes = append(append([]string{}, got.Notes...), j.Notes...)
	if got.Ref != "" {
		j.Notes = append([]string{"ran as " + got.Ref}, j.Notes...)
	}
	j.Notes = append(j.Notes, "stress: "+col.Stop.Reason)
	record(rc, j)
	rc.StopReason = col.Stop.Reason
	p.progress(c.ID, string(rc.Verdict), start)
	return rc, j.Decision
}

// collectBatch reads a finished job's log into what the cell brought back: the lab's
// own reads (HIGHMEM and the canary into the target's state, the modules' addresses,
// the kernel's clock at stress start), the steps' ends, the stress reports, and the
// kernel log's window. It keeps the steps' output and the job's files in logDir.
func (p *targetRun) collectBatch(logDir string, c job.Cell, extra map[string]string, cj runner.CellJob, orig map[int]job.Step, got *runner.CellLog) Collected {
	col := Collected{Console: got.Console, Stop: Stopped{KernelUS: -1, MS: -1,
		Reason: "ran every step to its end: a cell on " + string(p.info.Kind) + " cannot stop early at a sure verdict"}}
	byStep := map[string]runner.StepResult{}
	for _, s := range got.Steps {
		byStep[s.Phase+"/"+s.Name] = s
	}
	lab := func(name string) (runner.StepResult, bool) { s, ok := byStep["lab/"+name]; return s, ok }
	if s, ok := lab(batchHighmem); ok {
		f := strings.Fields(s.Output)
		if len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			p.highmem = kb > 0
		}
	}
	if s, ok := lab(batchCanary); ok {
		if res, err := canary.Parse(s.Output); err != nil || s.Status != 0 {
			detail := fmt.Sprintf("exit status %d", s.Status)
			if err != nil {
				detail = err.Error()
			}
			p.canary = verdict.Canary{State: verdict.CanaryFailed, Detail: detail}
		} else {
			p.canary = verdict.Canary{State: res.State, Detail: res.Detail()}
		}
	} else if p.o.Canary && p.canary.State == "" {
		p.canary = verdict.Canary{State: verdict.CanaryFailed, Detail: "the canary step did not run"}
	}
	if s, ok := lab(batchAddrs); ok {
		col.TextAddrs = map[string]uint64{}
		for _, l := range strings.Split(s.Output, "\n") {
			f := strings.Fields(l)
			if len(f) == 2 {
				if v, err := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64); err == nil && v != 0 {
					col.TextAddrs[f[0]] = v
				}
			}
		}
	}
	if s, ok := lab(batchUptime); ok {
		if f := strings.Fields(s.Output); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				col.Stop.KernelUS = int64(v * 1e6)
			}
		}
	}
	// The steps' ends, as step.go judges them.
	for i, st := range cj.Steps {
		if st.Phase == "lab" || st.Phase == "collect" {
			continue
		}
		s, ok := byStep[st.Phase+"/"+st.Name]
		if !ok {
			continue
		}
		js := orig[i] // a -ready check has no entry: its step's zero value
		if logf, err := os.Create(filepath.Join(logDir, st.Phase+"-"+st.Name+".log")); err == nil {
			fmt.Fprintf(logf, "$ %s\n%s", st.Cmd, s.Output)
			logf.Close()
		}
		fail := func(kind, detail string) {
			vs := verdict.Step{Phase: st.Phase, Name: st.Name, Kind: kind, Detail: detail}
			if st.Phase == "stress" {
				vs.Policy = js.FailurePolicy()
			}
			col.Failed = append(col.Failed, vs)
		}
		switch {
		case s.TimedOut:
			col.End = max(col.End, TimedOut)
			fail(verdict.FailTimeout, fmt.Sprintf("did not finish within %s", st.Timeout))
		case s.Status < 0:
			fail(verdict.FailError, "the job ended before the step did")
		case s.Status != 0 && !js.IgnoreFail:
			fail(verdict.FailExit, fmt.Sprintf("exit status %d", s.Status))
		}
		if js.TestsKind() == "ktap" {
			os.WriteFile(filepath.Join(logDir, st.Name+".ktap"), []byte(s.Output), 0o644)
			d := parseKTAP("stdout", s.Output)
			col.Tests = append(col.Tests, verdict.Tests{Step: st.Name, Source: "stdout", Cases: d.Cases(), Problem: d.Problem})
		}
		if st.Phase == "stress" && js.Report != "" {
			file, _ := p.o.Job.ExpandPath(js.Report, c, p.o.Seed, extra)
			data, ok := got.Files[file]
			if !ok {
				col.Failed = append(col.Failed, *badStress(st.Name, fmt.Sprintf("stress report %s: not in the job's log", file)))
				continue
			}
			os.WriteFile(filepath.Join(logDir, "stress-"+st.Name+".json"), data, 0o644)
			if sr, bad := parseStress(st.Name, file, data); bad != nil {
				col.Failed = append(col.Failed, *bad)
			} else {
				col.Stress = append(col.Stress, sr)
			}
		}
	}
	// The kernel log's window, from the records the collect step printed.
	if s, ok := lab(batchKmsgFrom); ok && s.Status == 0 {
		if seq, err := strconv.ParseUint(strings.TrimSpace(s.Output), 10, 64); err == nil {
			col.Kernel = readKernelLog(seq, filepath.Join(logDir, "kern.log"), got, byStep["collect/"+batchKmsg].Output)
		}
	}
	if col.Kernel.Window == nil {
		col.Failed = append(col.Failed, verdict.Step{Phase: "collect", Name: "window start", Kind: verdict.FailError,
			Detail: "the job did not read the kernel log's sequence number", Policy: verdict.PolicyInfra})
	}
	for remote, data := range got.Files {
		os.WriteFile(filepath.Join(logDir, filepath.Base(remote)), data, 0o644)
	}
	if col.Console != "" {
		os.WriteFile(filepath.Join(logDir, "console.log"), []byte(col.Console), 0o644)
	}
	return col
}

// readKernelLog reads a finished job's kernel-log records (its Kmsg, else the collect
// step's output) into a window that starts after record start, and keeps them in file.
func readKernelLog(start uint64, file string, got *runner.CellLog, collected string) KernelLog {
	text := got.Kmsg
	if text == "" {
		text = collected
	}
	k := newKernelLog(start)
	var out *bufio.Writer
	if fh, err := os.Create(file); err == nil {
		defer fh.Close()
		out = bufio.NewWriterSize(fh, 256*1024)
		defer out.Flush()
	}
	trace.ReadLines(strings.NewReader(text), func(s string) {
		if l, ok := k.record(s); ok && out != nil {
			out.WriteString(l)
			out.WriteByte('\n')
		}
	}, func() {})
	return k.result(0)
}

// CellJobs builds what the cells need (modules, tools, canary, agent) and returns each
// as the whole job a batch kind would get, without running anything: `kmodlab lava
// render` prints them as LAVA jobs.
func CellJobs(ctx context.Context, o Options) ([]runner.CellJob, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	byTarget := map[string]*targetRun{}
	var out []runner.CellJob
	for _, c := range o.Cells {
		p := byTarget[c.Target]
		if p == nil {
			p = &targetRun{o: o, target: c.Target}
			info, err := o.Machines.Describe(c.Target)
			if err != nil {
				return nil, err
			}
			p.info = info
			if err := p.buildAll(ctx); err != nil {
				return nil, fmt.Errorf("build for %s: %w", c.Target, err)
			}
			rec := &recorder{info: p.info}
			if err := p.deploy(ctx, rec); err != nil {
				return nil, err
			}
			p.batchFiles = rec.files
			byTarget[c.Target] = p
		}
		cj, _, err := p.cellJob(ctx, c, "", o.Vars)
		if err != nil {
			return nil, err
		}
		out = append(out, cj)
	}
	return out, nil
}
