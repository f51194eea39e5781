package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// A shard's results.json comes from another machine (an uploaded artifact): merge reads
// it as outside input. Validate checks it field by field before anything is drawn
// from it, so a bad shard is an error naming its file and field, never a panic or an
// index out of range in the chart.

// maxSeconds bounds a duration in a shard (a year): beyond it, arithmetic on it as a
// time.Duration would overflow.
const maxSeconds = 365 * 24 * 3600

// Validate checks a shard's run; the error lists every problem as FILE: FIELD: problem.
func (r *Run) Validate(file string) error {
	v := &validator{file: file}
	v.text("job", r.Job, true)
	v.seconds("seconds", r.Seconds)
	for i, k := range r.Keys {
		v.text(fmt.Sprintf("keys[%d]", i), k, true)
	}
	if len(r.Cells) == 0 {
		v.bad("cells", "no cells")
	}
	for i, c := range r.Cells {
		v.cell(fmt.Sprintf("cells[%d]", i), c)
	}
	if len(v.problems) > 0 {
		return &MergeError{Problems: v.problems}
	}
	return nil
}

type validator struct {
	file     string
	problems []string
}

func (v *validator) bad(field, format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf("%s: %s: %s", v.file, field, fmt.Sprintf(format, args...)))
}

// text checks a one-line name: no control characters, and present when need.
func (v *validator) text(field, s string, need bool) {
	switch {
	case need && s == "":
		v.bad(field, "missing")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		v.bad(field, "%q holds a control character", s)
	}
}

func (v *validator) seconds(field string, s float64) {
	if s < 0 || s > maxSeconds || math.IsNaN(s) {
		v.bad(field, "%v: want 0 to %d seconds", s, maxSeconds)
	}
}

// ms checks a time in milliseconds: 0 or more, or -1 (none) when none is allowed.
func (v *validator) ms(field string, ms int64, none bool) {
	min := int64(0)
	if none {
		min = -1
	}
	if ms < min || ms > maxSeconds*1000 {
		what := "0 or more"
		if none {
			what = "-1 (none) or more"
		}
		v.bad(field, "%d: want %s ms, up to a year", ms, what)
	}
}

func (v *validator) count(field string, n int64) {
	if n < 0 {
		v.bad(field, "%d: a count cannot be negative", n)
	}
}

func (v *validator) cell(f string, c *Cell) {
	if c == nil {
		v.bad(f, "null, want a cell")
		return
	}
	v.text(f+".id", c.ID, true)
	if c.ID != "" {
		f = fmt.Sprintf("%s (%s)", f, strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return '?'
			}
			return r
		}, c.ID))
	}
	v.text(f+".target", c.Target, true)
	if c.Target != "" && c.ID != c.Target && !strings.HasPrefix(c.ID, c.Target+"/") {
		v.bad(f+".target", "%q: the cell's id does not start with it", c.Target)
	}
	if !slices.Contains(verdict.All, c.Verdict) {
		v.bad(f+".verdict", "%q: not a verdict", c.Verdict)
	}
	if ex := verdict.Expectations; !slices.Contains(ex, c.Expect) {
		var want []string
		for _, e := range ex[:len(ex)-1] {
			want = append(want, string(e))
		}
		v.bad(f+".expect", "%q: want %s or %s", c.Expect, strings.Join(want, ", "), ex[len(ex)-1])
	}
	for k, p := range c.Params {
		v.text(f+".params."+k, k, true)
		v.text(f+".params."+k, p, false)
	}
	v.text(f+".runner", c.Runner, false)
	v.text(f+".kernel", c.Kernel, false)
	for i, ms := range c.Divergences {
		v.ms(fmt.Sprintf("%s.divergence_ms[%d]", f, i), ms, false)
	}
	v.ms(f+".first_divergence_ms", c.FirstDivergenceMS, true)
	v.ms(f+".stop_ms", c.StopMS, true)
	for k, s := range c.Timings {
		v.seconds(f+".timings."+k, s)
	}
	for i, r := range c.Runs {
		rf := fmt.Sprintf("%s.runs[%d]", f, i)
		if !slices.Contains(verdict.All, r.Verdict) {
			v.bad(rf+".verdict", "%q: not a verdict", r.Verdict)
		}
		v.ms(rf+".first_divergence_ms", r.FirstDivergenceMS, true)
		v.ms(rf+".stop_ms", r.StopMS, true)
		v.seconds(rf+".seconds", r.Seconds)
	}
	if c.MetRuns < 0 || c.MetRuns > len(c.Runs) {
		v.bad(f+".met_runs", "%d: want 0 to %d (the repeats)", c.MetRuns, len(c.Runs))
	}
	if t := c.Trace; t != nil {
		tf := f + ".trace"
		for name, n := range map[string]int{"transactions": t.Transactions, "reads": t.Reads, "writes": t.Writes,
			"diverged": t.Diverged, "unparsed": t.Unparsed, "merged": t.Merged, "long": t.Long,
			"integrity_errors": t.Integrity, "user_faults": t.UserFaults, "unstable_writes": t.Unstable} {
			v.count(tf+"."+name, int64(n))
		}
		for k, n := range t.Kinds {
			v.count(tf+".kinds."+k, int64(n))
		}
	}
	if s := c.Stress; s != nil {
		sf := f + ".stress"
		v.count(sf+".reads", s.Reads)
		v.count(sf+".writes", s.Writes)
		v.count(sf+".io_errors", s.IOErrors)
		v.count(sf+".mismatches", int64(s.Mismatches))
		v.count(sf+".ops", s.Ops)
		for k, n := range s.Interleavings {
			v.text(sf+".interleavings key", k, true)
			v.count(sf+".interleavings."+k, n)
		}
		v.ms(sf+".first_mismatch_ms", s.FirstMS, true)
		v.seconds(sf+".seconds", s.Seconds)
	}
	if s := c.CrashSource; s != nil {
		if s.Line < 0 {
			v.bad(f+".crash_source.line", "%d: want 0 or more", s.Line)
		}
		v.text(f+".crash_source.file", s.File, true)
	}
	if s := c.BuildSource; s != nil {
		if s.Line < 0 {
			v.bad(f+".build_source.line", "%d: want 0 or more", s.Line)
		}
		v.text(f+".build_source.file", s.File, true)
	}
	if b := c.Build; b != nil {
		v.count(f+".build.warnings", int64(b.Warnings))
		v.seconds(f+".build.seconds", b.Seconds)
		v.seconds(f+".build.cpu_seconds", b.CPUSeconds)
	}
	if w := c.Window; w != nil {
		v.count(f+".window.records", int64(w.Records))
		v.count(f+".window.lost", int64(w.Lost))
		for i, g := range w.Gaps {
			v.count(fmt.Sprintf("%s.window.gaps[%d].missing", f, i), int64(g.Missing))
		}
	}
}
