package build

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Diagnostic is one compiler, assembler or modpost message of a module build, with its
// place: File is relative to the module's directory when the file is one of the
// module's own (InModule), else the path as the compiler printed it (a kernel header),
// shortened to the headers tree.
type Diagnostic struct {
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Severity string `json:"severity"` // "error" or "warning"
	Message  string `json:"message"`
	InModule bool   `json:"in_module"`
	// From is where the module's own source pulled the file in ("rapiddisk.c:40"), for
	// a message inside a header.
	From string `json:"from,omitempty"`
	// Tool is "cc" (compiler or assembler) or "modpost".
	Tool string `json:"tool"`
}

// String is "rapiddisk.c:815: implicit declaration of function 'x'".
func (d Diagnostic) String() string {
	where := d.Place()
	if where == "" {
		return d.Message
	}
	s := where + ": " + d.Message
	if d.From != "" {
		s += " (included from " + d.From + ")"
	}
	return s
}

// Place is "file:line" ("" for a message without one, such as modpost's).
func (d Diagnostic) Place() string {
	switch {
	case d.File == "":
		return ""
	case d.Line == 0:
		return d.File
	}
	return fmt.Sprintf("%s:%d", d.File, d.Line)
}

// SourceLine is where the message belongs in the module's own sources: its own place,
// or the module's line that included the header it is in. ok is false when neither is
// known.
func (d Diagnostic) SourceLine() (file string, line int, ok bool) {
	if d.InModule && d.File != "" && d.Line > 0 {
		return d.File, d.Line, true
	}
	if d.From != "" {
		f, l, found := strings.Cut(d.From, ":")
		if n, err := strconv.Atoi(l); found && err == nil {
			return f, n, true
		}
	}
	return "", 0, false
}

// Paths tells the parser which files are the module's: Work is the directory the
// build ran in (absolute paths under it are the module's), Files the module's source
// files relative to it (a relative path the compiler printed is the module's when it
// is one of them; kbuild prints others relative to the headers tree it runs in).
type Paths struct {
	Work  string
	Files map[string]bool
}

func (p Paths) resolve(file string) (rel string, inModule bool) {
	file = strings.TrimSpace(file)
	if filepath.IsAbs(file) {
		file = path.Clean(file)
	}
	if p.Work != "" && strings.HasPrefix(file, strings.TrimSuffix(p.Work, "/")+"/") {
		return strings.TrimPrefix(file, strings.TrimSuffix(p.Work, "/")+"/"), true
	}
	if !filepath.IsAbs(file) {
		c := path.Clean(file)
		if p.Files[c] {
			return c, true
		}
		return c, false
	}
	// A kernel header under the cache's headers tree: from the tree on.
	if i := strings.Index(file, "/usr/src/linux-headers-"); i >= 0 {
		rest := file[i+len("/usr/src/"):]
		if _, after, ok := strings.Cut(rest, "/"); ok {
			return after, false
		}
	}
	return file, false
}

// quotes turns gcc's typographic quotes (a UTF-8 locale's) into plain ones.
var quotes = strings.NewReplacer("\u2018", "'", "\u2019", "'")

var (
	ansiRe = regexp.MustCompile(`\x1b\[[0-9;]*[mK]`)
	// file:line[:col]: severity: message (gcc, clang, gas; cross compilers print the same).
	diagRe = regexp.MustCompile(`^([^\s:][^:]*):(\d+):(?:(\d+):)?\s*(fatal error|error|warning|Error|Warning):\s*(.*)$`)
	// gcc: "In file included from a.c:40," and "                 from b.h:3:"; clang: "In file included from a.c:40:".
	includedRe = regexp.MustCompile(`^(?:In file included from|\s+from)\s+([^\s:][^:]*):(\d+)(?::\d+)?[:,]?\s*$`)
	// modpost: ERROR: modpost: "sym" [/tmp/x/m.ko] undefined!  WARNING: modpost: missing MODULE_DESCRIPTION() in m.o
	modpostRe = regexp.MustCompile(`^(ERROR|WARNING): modpost: (.*)$`)
	flagRe    = regexp.MustCompile(`\s*\[-W[^\]]*\]$`)
	makeRe    = regexp.MustCompile(`^([^\s:][^:]*):(\d+): \*\*\* (.*)$`)
	noRuleRe  = regexp.MustCompile(`\*\*\* No rule to make target '([^']+)'`)
	// kbuild's progress ("  CC [M]  x.o") and make's own lines.
	kbuildRe = regexp.MustCompile(`^(\s+[A-Z][A-Z0-9_]*(\s+\[M\])?\s+\S|make(\[\d+\])?: )`)
)

// ParseLog reads a kbuild log's diagnostics in order: errors and warnings of gcc and
// clang (native or cross), the assembler's, and modpost's. Notes are dropped; a
// message repeated at the same place (a header included twice) is kept once.
func ParseLog(log string, p Paths) []Diagnostic {
	var out []Diagnostic
	seen := map[string]bool{}
	var chain []string // the include chain of the next message, innermost first
	inChain := false   // the previous line was part of a chain (clang repeats "In file included from")
	for _, raw := range strings.Split(log, "\n") {
		l := quotes.Replace(strings.TrimRight(ansiRe.ReplaceAllString(raw, ""), "\r"))
		m := includedRe.FindStringSubmatch(l)
		wasChain := inChain
		inChain = m != nil
		if m != nil {
			if strings.HasPrefix(l, "In file included from") && !wasChain {
				chain = chain[:0]
			}
			f, in := p.resolve(m[1])
			if in {
				chain = append(chain, f+":"+m[2])
			} else {
				chain = append(chain, "")
			}
			continue
		}
		if m := modpostRe.FindStringSubmatch(l); m != nil {
			d := Diagnostic{Severity: strings.ToLower(m[1]), Message: "modpost: " + p.trimWork(m[2]), Tool: "modpost", InModule: true}
			if key := d.Severity + d.Message; !seen[key] {
				seen[key] = true
				out = append(out, d)
			}
			continue
		}
		if m := makeRe.FindStringSubmatch(l); m != nil {
			// make's own error in the module's Kbuild or Makefile ("Kbuild:3: *** missing separator.  Stop.").
			if file, in := p.resolve(m[1]); in {
				line, _ := strconv.Atoi(m[2])
				out = append(out, Diagnostic{File: file, Line: line, Severity: "error", Message: strings.TrimSuffix(strings.TrimSpace(m[3]), ".  Stop."), InModule: true, Tool: "make"})
			}
			continue
		}
		if m := noRuleRe.FindStringSubmatch(l); m != nil {
			// A Kbuild naming an object whose source the module does not have.
			if file, in := p.resolve(m[1]); in {
				out = append(out, Diagnostic{Severity: "error", Message: "make: no rule to make " + file + " (is its source missing?)", InModule: true, Tool: "make"})
			}
			continue
		}
		m = diagRe.FindStringSubmatch(l)
		if m == nil {
			if kbuildRe.MatchString(l) {
				chain = chain[:0] // the next file's build
			}
			continue
		}
		sev := strings.ToLower(m[4])
		if sev == "fatal error" {
			sev = "error"
		}
		file, in := p.resolve(m[1])
		line, _ := strconv.Atoi(m[2])
		col, _ := strconv.Atoi(m[3])
		d := Diagnostic{File: file, Line: line, Col: col, Severity: sev, Message: flagRe.ReplaceAllString(strings.TrimSpace(m[5]), ""), InModule: in, Tool: "cc"}
		if !in {
			// The module's own line nearest to the header: the innermost of the chain.
			for _, c := range chain {
				if c != "" {
					d.From = c
					break
				}
			}
		}
		if strings.HasPrefix(d.Message, "-W") || d.Message == "" {
			continue
		}
		key := fmt.Sprintf("%s:%d:%s:%s", d.File, d.Line, d.Severity, d.Message)
		if !seen[key] {
			seen[key] = true
			out = append(out, d)
		}
	}
	return out
}

func (p Paths) trimWork(s string) string {
	if p.Work == "" {
		return s
	}
	return strings.ReplaceAll(s, strings.TrimSuffix(p.Work, "/")+"/", "")
}

// FirstError is the first error of a build's diagnostics, nil when none.
func FirstError(ds []Diagnostic) *Diagnostic {
	for i := range ds {
		if ds[i].Severity == "error" {
			return &ds[i]
		}
	}
	return nil
}

// ModuleWarnings are the warnings that are the module's own: in its files, or
// modpost's about it. Warnings inside kernel headers are left out.
func ModuleWarnings(ds []Diagnostic) []Diagnostic {
	var w []Diagnostic
	for _, d := range ds {
		if d.Severity == "warning" && d.InModule {
			w = append(w, d)
		}
	}
	return w
}
