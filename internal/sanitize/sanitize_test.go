package sanitize

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
)

// runs reports whether the Actions runner would take some line of s as a workflow
// command: a line (ended by \n or \r) starting with "::" after Unicode white space, or
// holding "##[" anywhere.
func runs(s string) bool {
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if strings.HasPrefix(strings.TrimLeftFunc(l, unicode.IsSpace), "::") || strings.Contains(l, "##[") {
			return true
		}
	}
	return false
}

func TestCommands(t *testing.T) {
	for in, want := range map[string]string{
		"::warning title=injected::x":       `\::warning title=injected::x`,
		"  \t::error::x":                    "  \t\\::error::x",
		"ok\n::add-mask::secret":            "ok\n\\::add-mask::secret",
		"ok\r::notice::x":                   "ok\r\\::notice::x",
		"\u00a0\u2003\u3000::group::x":      "\u00a0\u2003\u3000\\::group::x",
		"evidence ::not at the start":       "evidence ::not at the start",
		"a ##[warning]x":                    `a ##\[warning]x`,
		"###[x] and #[y]":                   `###\[x] and #[y]`,
		"plain text, 3 of 11: diverged (x)": "plain text, 3 of 11: diverged (x)",
	} {
		got := Commands(in)
		if got != want {
			t.Errorf("Commands(%q) = %q, want %q", in, got, want)
		}
		if runs(got) {
			t.Errorf("Commands(%q) = %q still runs", in, got)
		}
		if Commands(got) != got {
			t.Errorf("Commands is not idempotent on %q", got)
		}
	}
}

func TestWriterAcrossWrites(t *testing.T) {
	in := "line one\n  \u2003::warning::split\nand ##[error]x\r::x::y\n"
	for size := 1; size <= len(in); size++ {
		var b bytes.Buffer
		w := NewWriter(&b)
		for i := 0; i < len(in); i += size {
			w.Write([]byte(in[i:min(i+size, len(in))]))
		}
		if b.String() != Commands(in) {
			t.Fatalf("writes of %d bytes: %q, want %q", size, b.String(), Commands(in))
		}
	}
}

func FuzzCommands(f *testing.F) {
	f.Add("::warning::x\n \u00a0::error::y\r##[z]")
	f.Fuzz(func(t *testing.T, s string) {
		got := Commands(s)
		if runs(got) {
			t.Fatalf("Commands(%q) = %q runs a command", s, got)
		}
		var b bytes.Buffer
		w := NewWriter(&b)
		half := len(s) / 2
		w.Write([]byte(s[:half]))
		w.Write([]byte(s[half:]))
		if runs(b.String()) {
			t.Fatalf("Writer(%q) = %q runs a command", s, b.String())
		}
	})
}

func TestMarkdown(t *testing.T) {
	if got := MDText("a | b\n**x** <img src=x> [l](u) $x$ &amp;"); strings.ContainsAny(strings.NewReplacer(`\|`, "", `\*`, "", `\<`, "", `\>`, "", `\[`, "", `\]`, "", `\$`, "", `\&`, "").Replace(got), "|*<>[]$&\n") {
		t.Errorf("MDText left markup: %q", got)
	}
	code := "a ``` b\n````\nc"
	block := MDFence(code)
	if !strings.HasPrefix(block, "`````\n") || !strings.HasSuffix(block, "\n`````\n") || !strings.Contains(block, code) {
		t.Errorf("MDFence: %q", block)
	}
	if got := MDCode("x `y` ``z``"); got != "```x `y` ``z`````" && got != "``` x `y` ``z`` ```" {
		t.Errorf("MDCode: %q", got)
	}
	if got := HTML("</summary><script>\nx"); got != "&lt;/summary&gt;&lt;script&gt; x" {
		t.Errorf("HTML: %q", got)
	}
}
