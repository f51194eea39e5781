package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/observe/symbolize"
	"github.com/kmodlab/kmodlab/lab/report"
)

// Judged is a cell's verdict with what it was decided from, for the report.
type Judged struct {
	Evidence verdict.Evidence
	Decision verdict.Decision
	Stop     Stopped
	Source   *report.Source // the crash's first frame in the job's modules, at its line
	Notes    []string       // what went wrong or was kept on the way: symbolizing, a diagnosis
}

// judge decides cell c of the target from what it collected: it gathers the evidence,
// asks lab/judge/verdict, and puts source lines on the crash from the job's built modules.
// It reads no machine and writes no file, so an interactive cell and a batch cell
// judge alike.
func (p *targetRun) judge(c job.Cell, col Collected) Judged {
	ev := verdict.Evidence{
		Trace:   col.Kernel.Trace,
		Stress:  col.Stress,
		Failed:  col.Failed,
		Tests:   col.Tests,
		Window:  col.Kernel.Window,
		Lost:    col.Lost,
		Highmem: p.highmem,
		Canary:  p.canary,
		Pins:    p.pins(),
	}
	for _, m := range p.o.Job.Build.Modules {
		ev.Modules = append(ev.Modules, m.Name)
	}
	// The console (guests) sees a crash even when the machine died before the kernel
	// log could be streamed; the kernel log sees what the console's log level hides.
	// Both are read; a report seen in both is counted once.
	ev.Crashes = mergeReports(console.Find(col.Console), col.Kernel.Reports)
	if col.Panicked && !console.Fatal(ev.Crashes) {
		ev.Crashes = append(ev.Crashes, console.Report{Title: "kernel panic (the guest's pvpanic device said so)", Kind: console.KindPanic})
	}
	j := Judged{Evidence: ev, Decision: verdict.Decide(ev, verdict.Expect{Want: c.Expect, Min: p.o.Job.Expect.Evidence()}), Stop: col.Stop}
	if j.Decision.Crash != nil {
		var note string
		j.Source, note = p.symbolize(j.Decision.Crash, col.TextAddrs)
		if note != "" {
			j.Notes = append(j.Notes, note)
		}
	}
	return j
}

// record puts a judged cell into its report cell.
func record(rc *report.Cell, j Judged) {
	rc.Record(report.Findings{Evidence: j.Evidence, Decision: j.Decision, StressKernelUS: j.Stop.KernelUS,
		StopMS: j.Stop.MS, StopReason: j.Stop.Reason, CrashSource: j.Source, Notes: j.Notes})
}

// symbolize puts source lines on the crash's frames in the job's modules (from the
// built .ko's DWARF and where the module was loaded, textAddrs) and names the first in
// the title; it returns that frame's place, and a note when symbolizing failed.
func (p *targetRun) symbolize(r *console.Report, textAddrs map[string]uint64) (*report.Source, string) {
	j := p.o.Job
	var mods []symbolize.Module
	for _, m := range j.Build.Modules {
		ko := p.hostKOs[m.Name]
		if ko == "" {
			continue // built on the machine: no host copy to read
		}
		mods = append(mods, symbolize.Module{Name: m.Name, KO: ko, TextAddr: textAddrs[m.Name], SrcDir: m.Dir, Root: j.RootDir()})
	}
	if len(mods) == 0 {
		return nil, ""
	}
	var src *report.Source
	note := ""
	frames, err := symbolize.Report(r.Text, mods)
	if err != nil {
		note = "symbolize: " + firstLine(err.Error())
	}
	for _, f := range frames {
		if f.File == "" {
			continue
		}
		for i := range r.Frames {
			fr := &r.Frames[i]
			if fr.Func == f.Func && fr.Offset == f.Offset && fr.Module == f.Module {
				fr.Source = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
		}
		if src == nil {
			src = &report.Source{File: f.File, Line: f.Line, Frame: f.String()}
			r.Title += " at " + f.Func + " (" + fmt.Sprintf("%s:%d", f.File, f.Line) + ")"
		}
	}
	r.Text = symbolize.Annotate(r.Text, frames)
	return src, note
}

// diagnose asks a hung machine for its blocked tasks and stacks, where it can, keeps
// the answer in logDir, and says so ("" when the machine cannot be asked).
func diagnose(ctx context.Context, r runner.Runner, logDir string) string {
	dg, ok := r.(runner.Diagnoser)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := dg.Diagnose(ctx)
	if err != nil {
		return "diagnosis failed: " + firstLine(err.Error())
	}
	file := filepath.Join(logDir, "diagnose.log")
	if os.WriteFile(file, []byte(out), 0o644) != nil {
		return ""
	}
	return "diagnosis (sysrq w, t): " + file
}

// pins compares the replay's --pin values with what this run has.
func (p *targetRun) pins() []string {
	var out []string
	keys := make([]string, 0, len(p.o.Pins))
	for k := range p.o.Pins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want := p.o.Pins[k]
		got := map[string]string{"image": p.info.ImageHash, "module": p.modHash, "kernel": p.info.KernelRelease}[k]
		if want != "-" && got != want {
			out = append(out, fmt.Sprintf("%s was %s when recorded, is %s now", k, want, orDash(got)))
		}
	}
	return out
}

// mergeReports joins the console's and the kernel log's reports, dropping the kernel
// log's copy of a report the console already has (same title).
func mergeReports(con, kern []console.Report) []console.Report {
	seen := map[string]bool{}
	out := append([]console.Report(nil), con...)
	for _, r := range con {
		seen[r.Title] = true
	}
	for _, r := range kern {
		if !seen[r.Title] {
			out = append(out, r)
			seen[r.Title] = true
		}
	}
	return out
}
