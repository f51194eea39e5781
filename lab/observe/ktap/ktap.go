// Package ktap reads and writes KTAP, the test output format of the kernel's KUnit
// and kselftest (Documentation/dev-tools/ktap.rst), and the TAP 13/14 the kernel
// printed before KTAP had its name: a version line, a plan ("1..N"), result lines
// ("ok 1 name", "not ok 2 name # SKIP reason"), diagnostic lines ("# ..."), and
// subtests nested by indentation, each opened by its own version line or a
// "# Subtest: NAME" line.
//
// Lines that are none of these (a kernel oops printed in the middle of a suite, a
// driver's printk) never change the structure: they are kept as the running test's
// log. A stream that ends with a subtest still open, or with fewer results than its
// plan, is truncated; one whose numbers or indentation do not fit is malformed. Both
// are a Problem naming the line, never a guess.
package ktap

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Status is a test's outcome.
type Status string

// Statuses.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
	// Todo is a "not ok" with a TODO or XFAIL directive: a known failure, not
	// counted as one.
	Todo Status = "todo"
)

// Test is one result line with what led to it.
type Test struct {
	Number    int      `json:"number"`
	Name      string   `json:"name"`
	Status    Status   `json:"status"`              // "" for a test whose result line never came
	Directive string   `json:"directive,omitempty"` // "SKIP reason", "TODO reason"
	Log       []string `json:"log,omitempty"`       // diagnostic and other lines before the result, without their indentation
	Plan      int      `json:"plan,omitempty"`      // the subtests' plan, -1 none
	Subtests  []*Test  `json:"subtests,omitempty"`
	Line      int      `json:"line"` // of the result line, from 1
}

// Problem is why a stream cannot be trusted: it ends too early (Truncated) or does
// not fit the format.
type Problem struct {
	Line      int    `json:"line"` // from 1; the last line for a truncated stream
	Text      string `json:"text,omitempty"`
	Msg       string `json:"msg"`
	Truncated bool   `json:"truncated,omitempty"`
}

func (p *Problem) Error() string {
	kind := "malformed"
	if p.Truncated {
		kind = "truncated"
	}
	if p.Text == "" {
		return fmt.Sprintf("KTAP line %d: %s: %s", p.Line, kind, p.Msg)
	}
	return fmt.Sprintf("KTAP line %d: %s: %s: %q", p.Line, kind, p.Msg, p.Text)
}

// Doc is a parsed stream.
type Doc struct {
	Version string  `json:"version"` // "KTAP version 1", "TAP version 14"
	Plan    int     `json:"plan"`    // -1 none
	Tests   []*Test `json:"tests"`
	Log     []string
	Problem *Problem `json:"problem,omitempty"`
	Lines   int      `json:"lines"`
}

var (
	versionRe = regexp.MustCompile(`^(K?TAP) version (\d+)$`)
	planRe    = regexp.MustCompile(`^1\.\.(\d+)(\s*#.*)?$`)
	resultRe  = regexp.MustCompile(`^(ok|not ok)\s+(\d+)(?:\s+(.*))?$`)
	subtestRe = regexp.MustCompile(`^#\s*Subtest:\s*(.*)$`)
)

// level is one open nesting level.
type level struct {
	indent  int
	name    string // from "# Subtest:"
	plan    int
	planAt  int
	tests   []*Test
	log     []string
	pending *level // a subtest that ended and waits for its result line here
	opened  int    // line that opened it
}

// maxDepth bounds nesting (the kernel nests suites, cases and parameters: 3).
const maxDepth = 32

// Parse reads a KTAP stream. Text before the first version line is ignored (use
// FromKernelLog for a kernel log); a stream with no version line has a Problem.
func Parse(text string) *Doc {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	d := &Doc{Plan: -1, Lines: len(lines)}
	start := -1
	for i, l := range lines {
		if versionRe.MatchString(strings.TrimSpace(l)) {
			start = i
			break
		}
	}
	if start < 0 {
		d.Problem = &Problem{Line: max(1, len(lines)), Msg: "no KTAP or TAP version line", Truncated: true}
		return d
	}
	d.Version = strings.TrimSpace(lines[start])
	baseIndent := indentOf(lines[start])
	stack := []*level{{indent: baseIndent, plan: -1, opened: start + 1}}
	bad := func(n int, l, msg string) *Doc {
		d.Problem = &Problem{Line: n, Text: strings.TrimSpace(l), Msg: msg}
		d.finish(stack)
		return d
	}
	for i := start + 1; i < len(lines); i++ {
		n, l := i+1, lines[i]
		rest := strings.TrimSpace(l)
		if rest == "" {
			continue
		}
		ind := indentOf(l) - baseIndent
		top := stack[len(stack)-1]
		kind := classify(rest)
		if kind == lineOther || (kind == lineDiag && ind != top.indent-baseIndent) {
			// Not structure: the running test's log, whatever its indentation.
			top.log = append(top.log, rest)
			continue
		}
		if ind < 0 {
			return bad(n, l, "indented less than the version line")
		}
		ind += baseIndent
		if ind > top.indent {
			if top.pending != nil {
				return bad(n, l, fmt.Sprintf("subtest %s (from line %d) has no result line before the next subtest", top.pending.label(), top.pending.opened))
			}
			if len(stack) >= maxDepth {
				return bad(n, l, "nested too deep")
			}
			top = &level{indent: ind, plan: -1, opened: n}
			stack = append(stack, top)
		}
		for ind < top.indent {
			child := top
			stack = stack[:len(stack)-1]
			top = stack[len(stack)-1]
			if ind > top.indent {
				return bad(n, l, fmt.Sprintf("indentation %d matches no open level (%d or %d)", ind, top.indent, child.indent))
			}
			if top.pending != nil {
				return bad(n, l, fmt.Sprintf("subtest %s (from line %d) has no result line", top.pending.label(), top.pending.opened))
			}
			top.pending = child
		}
		switch kind {
		case lineVersion:
			if len(top.tests) > 0 || top.plan >= 0 || top.name != "" {
				return bad(n, l, "a version line after the level's tests began")
			}
		case lineSubtest:
			if len(top.tests) > 0 || top.name != "" {
				return bad(n, l, "a subtest header after the level's tests began")
			}
			top.name = subtestRe.FindStringSubmatch(rest)[1]
		case linePlan:
			if top.plan >= 0 {
				return bad(n, l, fmt.Sprintf("a second plan (the first at line %d)", top.planAt))
			}
			m := planRe.FindStringSubmatch(rest)
			p, err := strconv.Atoi(m[1])
			if err != nil || p > 1<<20 {
				return bad(n, l, "plan out of range")
			}
			top.plan, top.planAt = p, n
		case lineDiag:
			top.log = append(top.log, rest)
		case lineBail:
			return bad(n, l, "bail out")
		case lineResult:
			t, err := parseResult(rest)
			if err != "" {
				return bad(n, l, err)
			}
			if want := len(top.tests) + 1; t.Number != want {
				return bad(n, l, fmt.Sprintf("test number %d, want %d", t.Number, want))
			}
			t.Line, t.Log, t.Plan = n, top.log, -1
			top.log = nil
			if c := top.pending; c != nil {
				top.pending = nil
				t.Subtests, t.Plan = c.tests, c.plan
				t.Log = append(c.log, t.Log...)
				if c.plan >= 0 && len(c.tests) != c.plan {
					return bad(n, l, fmt.Sprintf("subtest %s: plan (line %d) says %d tests, %d ran", t.Name, c.planAt, c.plan, len(c.tests)))
				}
			}
			top.tests = append(top.tests, t)
		}
	}
	last := len(lines)
	if len(stack) > 1 {
		open := stack[1]
		d.Problem = &Problem{Line: last, Text: strings.TrimSpace(lines[last-1]), Truncated: true,
			Msg: fmt.Sprintf("the stream ends inside subtest %s (from line %d)", open.label(), open.opened)}
	} else if p := stack[0].pending; p != nil {
		d.Problem = &Problem{Line: last, Text: strings.TrimSpace(lines[last-1]), Truncated: true,
			Msg: fmt.Sprintf("subtest %s (from line %d) has no result line", p.label(), p.opened)}
	} else if root := stack[0]; root.plan >= 0 && len(root.tests) < root.plan {
		d.Problem = &Problem{Line: last, Text: strings.TrimSpace(lines[last-1]), Truncated: true,
			Msg: fmt.Sprintf("the plan (line %d) says %d tests, %d results", root.planAt, root.plan, len(root.tests))}
	} else if root.plan >= 0 && len(root.tests) > root.plan {
		t := root.tests[root.plan]
		d.Problem = &Problem{Line: t.Line, Msg: fmt.Sprintf("more results than the plan (line %d) says (%d)", root.planAt, root.plan)}
	}
	d.finish(stack)
	return d
}

// finish keeps what a stream that stopped early did report: each level still open
// (and a subtest still waiting for its result) becomes a test with no status
// holding the results it had, so the cases that finished are not lost.
func (d *Doc) finish(stack []*level) {
	for i := len(stack) - 1; i >= 0; i-- {
		l := stack[i]
		if p := l.pending; p != nil {
			l.pending = nil
			l.tests = append(l.tests, &Test{Number: len(l.tests) + 1, Name: p.name, Plan: p.plan, Subtests: p.tests, Log: p.log})
		}
		if i > 0 {
			parent := stack[i-1]
			parent.tests = append(parent.tests, &Test{Number: len(parent.tests) + 1, Name: l.name, Plan: l.plan, Subtests: l.tests, Log: l.log})
		}
	}
	d.Tests, d.Plan, d.Log = stack[0].tests, stack[0].plan, stack[0].log
}

func (l *level) label() string {
	if l.name == "" {
		return "(unnamed)"
	}
	return strconv.Quote(l.name)
}

type lineKind int

const (
	lineOther lineKind = iota
	lineVersion
	linePlan
	lineResult
	lineSubtest
	lineDiag
	lineBail
)

func classify(rest string) lineKind {
	switch {
	case versionRe.MatchString(rest):
		return lineVersion
	case planRe.MatchString(rest):
		return linePlan
	case strings.HasPrefix(rest, "ok ") || strings.HasPrefix(rest, "not ok ") || rest == "ok" || rest == "not ok":
		return lineResult
	case subtestRe.MatchString(rest):
		return lineSubtest
	case strings.HasPrefix(rest, "#"):
		return lineDiag
	case strings.HasPrefix(rest, "Bail out!"):
		return lineBail
	}
	return lineOther
}

// parseResult reads "ok 3 - name # SKIP why".
func parseResult(rest string) (*Test, string) {
	m := resultRe.FindStringSubmatch(rest)
	if m == nil {
		return nil, "a result line needs a test number"
	}
	num, err := strconv.Atoi(m[2])
	if err != nil {
		return nil, "test number out of range"
	}
	desc, directive := splitDirective(m[3])
	desc = strings.ReplaceAll(strings.TrimSpace(strings.TrimPrefix(desc, "- ")), `\#`, "#")
	if desc == "-" {
		desc = ""
	}
	t := &Test{Number: num, Name: desc, Directive: directive, Status: Pass}
	word := strings.ToUpper(strings.Fields(directive + " x")[0])
	switch {
	case word == "SKIP":
		t.Status = Skip
	case m[1] == "ok":
		t.Status = Pass
	case word == "TODO" || word == "XFAIL":
		t.Status = Todo
	default:
		t.Status = Fail
	}
	return t, ""
}

// splitDirective cuts "name # SKIP why" at the first '#' that follows a space
// (a '#' inside a name, as in "test#1", is the name's), honouring "\#".
func splitDirective(s string) (string, string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		}
	}
	return strings.TrimSpace(s), ""
}

// indentOf counts leading indentation, a tab as 4 columns (kunit indents by 4
// spaces; older kernels by a tab).
func indentOf(l string) int {
	n := 0
	for _, c := range l {
		switch c {
		case ' ':
			n++
		case '\t':
			n += 4
		default:
			return n
		}
	}
	return n
}
