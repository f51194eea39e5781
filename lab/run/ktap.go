package run

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/observe/ktap"
)

// KTAP steps (job/ktap.go): a kunit step's test module prints its KTAP into the
// kernel log while it loads; a ktap step's program prints it on stdout. Each step's
// stream is parsed (lab/observe/ktap) into test cases for the verdict (rule 5b) and the
// report, and kept in the cell's log directory as <step>.ktap.

// maxKTAP bounds what one step's stream may hold.
const maxKTAP = 4 << 20

// tapCapture collects what a KTAP step produced while it ran.
type tapCapture struct {
	step job.Step
	name string
	mu   sync.Mutex
	buf  bytes.Buffer
	full bool
}

func (t *tapCapture) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.buf.Len()+len(b) > maxKTAP {
		t.full = true
		return len(b), nil
	}
	return t.buf.Write(b)
}

// text is what was captured.
func (t *tapCapture) text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// beginKTAP starts capturing for a KTAP step; nil for any other step.
func (cr *cellRun) beginKTAP(s job.Step, name string) *tapCapture {
	if s.TestsKind() == "" {
		return nil
	}
	t := &tapCapture{step: s, name: name}
	if s.TestsKind() == "kunit" && cr.follow != nil {
		cr.follow.setTap(t)
	}
	return t
}

// stdout is the writer a step's stdout goes to: w, and the capture for a ktap step.
func (t *tapCapture) stdout(w io.Writer) io.Writer {
	if t == nil || t.step.TestsKind() != "ktap" {
		return w
	}
	return io.MultiWriter(w, t)
}

// record takes one kernel-log record's text for a kunit step's capture (the kernel
// escapes a newline inside a record as \x0a).
func (t *tapCapture) record(text string) {
	t.Write([]byte(strings.ReplaceAll(text, `\x0a`, "\n") + "\n"))
}

// endKTAP parses what the step produced into the step's tests; nil for a step that
// is not a KTAP step.
func (cr *cellRun) endKTAP(ctx context.Context, t *tapCapture) *verdict.Tests {
	if t == nil {
		return nil
	}
	source, text := "stdout", ""
	if t.step.TestsKind() == "kunit" {
		source = "kernel log"
		if cr.follow != nil {
			// Wait until the stream has delivered every record the load printed.
			if end, err := cr.agentLast(ctx); err == nil {
				cr.follow.waitFor(end, 20*time.Second)
			}
			cr.follow.setTap(nil)
		}
		text = ktap.FromKernelLog(t.text())
		if len(t.step.Suites) > 0 {
			if dfs, ok := cr.kunitDebugfs(ctx, t.step.Suites); ok {
				source, text = "debugfs", dfs
			}
		}
	} else {
		text = t.text()
	}
	os.WriteFile(filepath.Join(cr.rc.LogDir, t.name+".ktap"), []byte(text), 0o644)
	d := parseKTAP(source, text)
	if t.full {
		d.Problem = &ktap.Problem{Line: d.Lines, Msg: fmt.Sprintf("more than %d MiB of output: the rest was not kept", maxKTAP>>20), Truncated: true}
	}
	cases := d.Cases()
	for i := range cases {
		for k, l := range cases[i].Log {
			cases[i].Log[k] = cr.p.sourcePaths(l)
		}
	}
	return &verdict.Tests{Step: t.name, Source: source, Cases: cases, Problem: d.Problem}
}

// buildDirRe is a path into the temporary copy a module was built in (lab/build):
// KUnit's "EXPECTATION FAILED at FILE:LINE" names it, as __FILE__ does.
var buildDirRe = regexp.MustCompile(`/tmp/kmodlab-kbuild-\d+/([\w./-]+)`)

// sourcePaths names the job's own module source instead of the build's copy: the
// first of the job's module directories that holds the file.
func (p *targetRun) sourcePaths(line string) string {
	j := p.o.Job
	return buildDirRe.ReplaceAllStringFunc(line, func(m string) string {
		rel := buildDirRe.FindStringSubmatch(m)[1]
		for _, mod := range j.Build.Modules {
			if _, err := os.Stat(filepath.Join(j.Path(mod.Dir), rel)); err == nil {
				return filepath.ToSlash(filepath.Join(mod.Dir, rel))
			}
		}
		return m
	})
}

// parseKTAP parses one stream, or several (debugfs has one document per suite,
// separated by a line with only "\f"), into one document.
func parseKTAP(source, text string) *ktap.Doc {
	if source != "debugfs" {
		return ktap.Parse(text)
	}
	all := &ktap.Doc{Plan: -1}
	for _, part := range strings.Split(text, "\f\n") {
		d := ktap.Parse(part)
		for _, t := range d.Tests {
			t.Number = len(all.Tests) + 1
			all.Tests = append(all.Tests, t)
		}
		all.Lines += d.Lines
		if d.Problem != nil && all.Problem == nil {
			all.Problem = d.Problem
		}
	}
	return all
}

// kunitDebugfs reads the suites' results files; false when the kernel has none
// (no KUNIT_DEBUGFS, debugfs not mounted, a suite not loaded).
func (cr *cellRun) kunitDebugfs(ctx context.Context, suites []string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var parts []string
	for _, s := range suites {
		f := "/sys/kernel/debug/kunit/" + s + "/results"
		out, err := runner.Output(ctx, cr.r, "mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null; cat "+runner.Quote(f))
		if err != nil || strings.TrimSpace(out) == "" {
			return "", false
		}
		parts = append(parts, out)
	}
	return strings.Join(parts, "\f\n"), true
}
