// Package sanitize keeps text that came from outside the lab (a guest's console and
// kernel log, a board, a stress tool's report, a shard's results.json) from acting as
// anything but text where the lab prints it: as a GitHub Actions workflow command on
// stdout or stderr, or as markdown structure in summary.md.
//
// Workflow commands: the Actions runner reads every line a step prints (a line ends at
// \n or \r) and runs it as a command when, after leading white space (any Unicode
// space), it starts with "::"; it also runs the older "##[command]" form found anywhere
// in a line. Commands neutralises both: a line whose first non-space character is ':'
// gets a backslash before it (`  \::warning …`), and "##[" becomes "##\[". What a reader
// sees is what the guest printed, with the backslash showing where the lab stepped in.
// The lab's own annotations (report.Annotations) are the only commands it prints, and
// they bypass this on purpose.
package sanitize

import (
	"html"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Commands neutralises workflow commands in s (see the package comment).
func Commands(s string) string {
	if !strings.Contains(s, ":") && !strings.Contains(s, "##[") {
		return s
	}
	var b strings.Builder
	var st state
	st.start = true
	st.run([]byte(s), &b, true)
	return b.String()
}

// state is the neutraliser between writes: whether the line so far holds only white
// space, the '#' run just written, and a white-space rune split across two writes.
type state struct {
	start  bool // at a line's start, or only white space since
	hashes int  // consecutive '#' just written
	held   []byte
}

// writer is what run writes to (a strings.Builder or a bytes.Buffer).
type writer interface {
	io.Writer
	WriteByte(byte) error
	WriteString(string) (int, error)
}

// run neutralises p into w. With final, a rune left incomplete at the end is written as
// it is; otherwise it is held for the next write.
func (st *state) run(p []byte, w writer, final bool) {
	if len(st.held) > 0 {
		p = append(st.held, p...)
		st.held = nil
	}
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\n' || c == '\r' {
			w.WriteByte(c)
			st.start, st.hashes = true, 0
			i++
			continue
		}
		if st.start {
			if c < utf8.RuneSelf {
				if c == ' ' || c == '\t' || c == '\v' || c == '\f' {
					w.WriteByte(c)
					i++
					continue
				}
				st.start = false
				if c == ':' {
					w.WriteString(`\:`)
					i++
					continue
				}
			} else {
				if !final && !utf8.FullRune(p[i:]) && mayBeSpace(c) {
					st.held = append([]byte(nil), p[i:]...)
					return
				}
				r, n := utf8.DecodeRune(p[i:])
				if unicode.IsSpace(r) {
					w.Write(p[i : i+n])
					i += n
					continue
				}
				st.start = false
			}
		}
		if c == '[' && st.hashes >= 2 {
			w.WriteString(`\[`)
			st.hashes = 0
			i++
			continue
		}
		if c == '#' {
			st.hashes++
		} else {
			st.hashes = 0
		}
		w.WriteByte(c)
		i++
	}
}

// mayBeSpace says whether a UTF-8 lead byte can start a white-space rune (U+0085,
// U+00A0, U+1680, U+2000…U+205F, U+3000).
func mayBeSpace(lead byte) bool { return lead == 0xC2 || lead == 0xE1 || lead == 0xE2 || lead == 0xE3 }

// Writer neutralises workflow commands in everything written through it, across
// writes: a line split over two writes is judged as one.
type Writer struct {
	w   io.Writer
	st  state
	buf strings.Builder
}

// NewWriter returns a Writer printing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, st: state{start: true}} }

// Write implements io.Writer. It reports len(p) when w took everything written for p.
func (x *Writer) Write(p []byte) (int, error) {
	x.buf.Reset()
	x.st.run(p, &x.buf, false)
	if x.buf.Len() == 0 {
		return len(p), nil
	}
	if _, err := io.WriteString(x.w, x.buf.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Markdown text.

// MDText is s as markdown text inside a line (a table cell, after a list item's
// start): the characters markdown, its inline HTML and GitHub's math could read there
// are backslash-escaped and line breaks become spaces, so s cannot end the cell or the
// item, or open a link, an image, code, math, an entity or an HTML tag. '_' is left
// alone: inside a word (x86_64) it is text, and emphasis changes no structure.
func MDText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r':
			b.WriteByte(' ')
		case strings.ContainsRune("\\`*[]<>|~&!#$", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// MDCode is s as inline code: between backtick runs longer than any in s (padded with a
// space when s starts or ends with a backtick), with line breaks as spaces.
func MDCode(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	fence := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || s == "" {
		s = " " + s + " "
	}
	return fence + s + fence
}

// MDFence is s as a fenced code block that s cannot close: the fence is longer than any
// backtick run in s. The block ends with a newline.
func MDFence(s string) string {
	fence := strings.Repeat("`", max(3, longestRun(s, '`')+1))
	s = strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return fence + "\n" + s + fence + "\n"
}

// HTML is s escaped for HTML text (markdown does not read inside an HTML block such as
// <details>, so there HTML escaping is what keeps s text), on one line.
func HTML(s string) string {
	return html.EscapeString(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s))
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}
