package ktap

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Case is one test case of a stream: a leaf result, or a test with subtests whose
// own result failed while none of its subtests did (a suite whose init failed).
type Case struct {
	Path      string   `json:"path"` // "suite.case", "suite.case.param"
	Status    Status   `json:"status"`
	Directive string   `json:"directive,omitempty"`
	Log       []string `json:"log,omitempty"`
	Line      int      `json:"line"`
}

// Cases flattens the tests into cases, in stream order. A test whose result line
// never came (a truncated stream) is no case itself; the cases it finished are.
func (d *Doc) Cases() []Case {
	var out []Case
	var walk func(prefix string, ts []*Test)
	walk = func(prefix string, ts []*Test) {
		for _, t := range ts {
			name := t.Name
			if name == "" {
				name = fmt.Sprint(t.Number)
			}
			p := prefix + name
			before := len(out)
			walk(p+".", t.Subtests)
			childFailed := false
			for _, c := range out[before:] {
				childFailed = childFailed || c.Status == Fail
			}
			if t.Status != "" && (len(t.Subtests) == 0 || (t.Status == Fail && !childFailed)) {
				out = append(out, Case{Path: p, Status: t.Status, Directive: t.Directive, Log: t.Log, Line: t.Line})
			}
		}
	}
	walk("", d.Tests)
	return out
}

// Counts of a stream's cases by status.
type Counts struct {
	Pass, Fail, Skip, Todo int
}

// Count counts the cases.
func Count(cs []Case) Counts {
	var n Counts
	for _, c := range cs {
		switch c.Status {
		case Pass:
			n.Pass++
		case Fail:
			n.Fail++
		case Skip:
			n.Skip++
		case Todo:
			n.Todo++
		}
	}
	return n
}

func (n Counts) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped, %d todo", n.Pass, n.Fail, n.Skip, n.Todo)
}

// stampRe is dmesg's "[   12.345678] " (with printk's caller id "[    T1]" when the
// kernel has CONFIG_PRINTK_CALLER) and the kmsg agent's line prefix.
var stampRe = regexp.MustCompile(`^\[\s*\d+\.\d+\](\[\s*[TC]\d+\])? ?`)

// FromKernelLog takes the KTAP out of kernel log lines: from the last version line
// at the least indentation (the newest run; a module loaded twice prints twice),
// each line without its timestamp and without that version line's indentation.
// Lines of other printk writers stay in (the parser keeps them as the running test's
// log).
func FromKernelLog(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = stampRe.ReplaceAllString(strings.TrimRight(l, "\r"), "")
	}
	start, ind := -1, 0
	for i, l := range lines {
		if !versionRe.MatchString(strings.TrimSpace(l)) {
			continue
		}
		if n := indentOf(l); start < 0 || n <= ind {
			start, ind = i, n
		}
	}
	if start < 0 {
		return ""
	}
	prefix := lines[start][:len(lines[start])-len(strings.TrimLeft(lines[start], " \t"))]
	out := lines[start:]
	for i, l := range out {
		out[i] = strings.TrimPrefix(l, prefix)
	}
	for len(out) > 0 && strings.TrimSpace(out[len(out)-1]) == "" {
		out = out[:len(out)-1]
	}
	return strings.Join(out, "\n") + "\n"
}

// Node is a test to write: a name, a status, diagnostic lines, and subtests.
type Node struct {
	Name      string
	Status    Status
	Directive string // written after "# "; a Skip or Todo node gets SKIP or TODO when empty
	Diag      []string
	Subtests  []Node
}

// Write writes nodes as a KTAP version 1 document, subtests indented by 4 spaces
// with their own version line and "# Subtest:" header, as KUnit does.
func Write(w io.Writer, nodes []Node) error {
	var b strings.Builder
	writeLevel(&b, "", nodes)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLevel(b *strings.Builder, ind string, nodes []Node) {
	fmt.Fprintf(b, "%sKTAP version 1\n%s1..%d\n", ind, ind, len(nodes))
	for i, n := range nodes {
		writeOne(b, ind, i+1, n)
	}
}

// writeOne writes a subtest, with its own subtests one level deeper.
func writeOne(b *strings.Builder, ind string, num int, n Node) {
	if len(n.Subtests) > 0 {
		sub := ind + "    "
		fmt.Fprintf(b, "%sKTAP version 1\n%s# Subtest: %s\n%s1..%d\n", sub, sub, oneLine(n.Name), sub, len(n.Subtests))
		for j, s := range n.Subtests {
			writeOne(b, sub, j+1, s)
		}
	}
	for _, d := range n.Diag {
		for _, l := range strings.Split(d, "\n") {
			fmt.Fprintf(b, "%s# %s\n", ind, strings.TrimRight(l, "\r"))
		}
	}
	writeResult(b, ind, num, n)
}

func writeResult(b *strings.Builder, ind string, num int, n Node) {
	word := "ok"
	if n.Status == Fail || n.Status == Todo {
		word = "not ok"
	}
	dir := oneLine(n.Directive)
	switch {
	case n.Status == Skip && !strings.HasPrefix(strings.ToUpper(dir), "SKIP"):
		dir = strings.TrimSpace("SKIP " + dir)
	case n.Status == Todo && !strings.HasPrefix(strings.ToUpper(dir), "TODO"):
		dir = strings.TrimSpace("TODO " + dir)
	}
	fmt.Fprintf(b, "%s%s %d %s", ind, word, num, escapeName(oneLine(n.Name)))
	if dir != "" {
		fmt.Fprintf(b, " # %s", dir)
	}
	b.WriteByte('\n')
}

// escapeName keeps a name from being read as a directive: '#' after a space is
// written "\#" (KTAP's escape), leading "- " is not ours to strip.
func escapeName(s string) string {
	return strings.ReplaceAll(s, " #", ` \#`)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
