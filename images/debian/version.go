package debian

import (
	"bufio"
	"bytes"
	"strings"
	"unicode"
)

// CompareVersions orders two Debian package versions as dpkg does (epoch, then
// upstream version and revision, each compared by runs of non-digits, where ~ sorts
// before everything, and runs of digits as numbers): <0, 0 or >0.
func CompareVersions(a, b string) int {
	ea, ra := splitEpoch(a)
	eb, rb := splitEpoch(b)
	if c := compareNum(ea, eb); c != 0 {
		return c
	}
	ua, da := splitRevision(ra)
	ub, db := splitRevision(rb)
	if c := compareFragment(ua, ub); c != 0 {
		return c
	}
	return compareFragment(da, db)
}

func splitEpoch(v string) (string, string) {
	if e, rest, ok := strings.Cut(v, ":"); ok {
		return e, rest
	}
	return "0", v
}

func splitRevision(v string) (string, string) {
	if i := strings.LastIndex(v, "-"); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, ""
}

func order(c byte) int {
	switch {
	case c == '~':
		return -1
	case unicode.IsLetter(rune(c)):
		return int(c)
	case c == 0:
		return 0
	}
	return int(c) + 256
}

func compareFragment(a, b string) int {
	for a != "" || b != "" {
		// Non-digit runs.
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			var ca, cb byte
			if a != "" && !isDigit(a[0]) {
				ca = a[0]
			}
			if b != "" && !isDigit(b[0]) {
				cb = b[0]
			}
			if oa, ob := order(ca), order(cb); oa != ob {
				return oa - ob
			}
			if ca != 0 {
				a = a[1:]
			}
			if cb != 0 {
				b = b[1:]
			}
		}
		// Digit runs.
		var na, nb string
		na, a = digits(a)
		nb, b = digits(b)
		if c := compareNum(na, nb); c != 0 {
			return c
		}
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func compareNum(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// Stanza is one paragraph of a Packages index: field name to value (continuation
// lines joined).
type Stanza map[string]string

// ParsePackages reads the stanzas of a Packages index (only the fields named, or
// all when none are).
func ParsePackages(data []byte, fields ...string) []Stanza {
	want := map[string]bool{}
	for _, f := range fields {
		want[f] = true
	}
	var out []Stanza
	cur := Stanza{}
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = Stanza{}
			}
			last = ""
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if last != "" {
				cur[last] += "\n" + strings.TrimSpace(l)
			}
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		last = ""
		if len(want) == 0 || want[k] {
			cur[k] = strings.TrimSpace(v)
			last = k
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
