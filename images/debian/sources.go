package debian

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Source is one apt source entry (a one-line "deb …" line or a deb822 stanza).
type Source struct {
	Types      []string
	URIs       []string
	Suites     []string
	Components []string
	Options    map[string]string // lower-case keys: signed-by, arch, trusted, …
}

// ParseSources reads a sources file in either format (deb822 when it has a "URIs:"
// field). Disabled stanzas (Enabled: no) and deb-src entries are left out.
func ParseSources(data []byte) ([]Source, error) {
	if bytes.Contains(data, []byte("URIs:")) {
		return parseDeb822(data)
	}
	return parseOneLine(data)
}

func parseOneLine(data []byte) ([]Source, error) {
	var out []Source
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "deb" {
			continue
		}
		s := Source{Types: []string{"deb"}, Options: map[string]string{}}
		f = f[1:]
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			var opts []string
			for len(f) > 0 {
				w := f[0]
				f = f[1:]
				opts = append(opts, strings.Trim(w, "[]"))
				if strings.HasSuffix(w, "]") {
					break
				}
			}
			for _, o := range opts {
				if k, v, ok := strings.Cut(o, "="); ok {
					s.Options[strings.ToLower(k)] = v
				}
			}
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want 'deb URI SUITE [COMPONENT…]'", n)
		}
		s.URIs, s.Suites, s.Components = []string{f[0]}, []string{f[1]}, f[2:]
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseDeb822(data []byte) ([]Source, error) {
	var out []Source
	for _, stanza := range splitStanzas(data) {
		fields := map[string]string{}
		var last string
		for _, l := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
				continue
			}
			if (l[0] == ' ' || l[0] == '\t') && last != "" {
				fields[last] += " " + strings.TrimSpace(l)
				continue
			}
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				return nil, fmt.Errorf("deb822: %q is not a field", l)
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if len(fields) == 0 || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		s := Source{Types: strings.Fields(fields["types"]), URIs: strings.Fields(fields["uris"]),
			Suites: strings.Fields(fields["suites"]), Components: strings.Fields(fields["components"]),
			Options: map[string]string{}}
		for k, v := range fields {
			switch k {
			case "types", "uris", "suites", "components", "enabled":
			case "architectures":
				s.Options["arch"] = v
			default:
				s.Options[k] = v
			}
		}
		hasDeb := false
		for _, t := range s.Types {
			hasDeb = hasDeb || t == "deb"
		}
		if hasDeb && len(s.URIs) > 0 && len(s.Suites) > 0 {
			s.Types = []string{"deb"}
			out = append(out, s)
		}
	}
	return out, nil
}

func splitStanzas(data []byte) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == "" {
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteString(strings.TrimRight(l, "\r") + "\n")
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// noUpdates are suites without -updates and -security companions.
var noUpdates = map[string]bool{"sid": true, "unstable": true, "experimental": true}

// ForSuite derives the sources of another suite from entries naming from (bookworm):
// the same URIs, components and options with only the suite changed. "from-updates" and
// "from-security" become "to-updates"/"to-security", except for sid, which has none.
// Entries for other suites (vendor repositories) are dropped. A backports suite
// ("trixie-backports") gets the archive's entry for it alone, plus its base suite's
// when that is not from (a newer suite's backports need its libraries).
func ForSuite(srcs []Source, from, to string) []Source {
	base, backports := strings.CutSuffix(to, "-backports")
	var out []Source
	for _, s := range srcs {
		var suites []string
		for _, su := range s.Suites {
			switch {
			case su == from && backports:
				suites = append(suites, to)
				if base != from {
					suites = append(suites, base)
				}
			case su == from:
				suites = append(suites, to)
			case strings.HasPrefix(su, from+"-") && !noUpdates[to] && !backports && su != from+"-backports":
				suites = append(suites, to+strings.TrimPrefix(su, from))
			}
		}
		if len(suites) == 0 {
			continue
		}
		c := s
		c.Suites = suites
		out = append(out, c)
	}
	return out
}

// FormatList writes sources in the one-line format.
func FormatList(srcs []Source) []byte {
	var b strings.Builder
	for _, s := range srcs {
		var opts []string
		for k, v := range s.Options {
			opts = append(opts, k+"="+strings.ReplaceAll(v, " ", ","))
		}
		sort.Strings(opts)
		o := ""
		if len(opts) > 0 {
			o = "[" + strings.Join(opts, " ") + "] "
		}
		for _, u := range s.URIs {
			for _, su := range s.Suites {
				fmt.Fprintf(&b, "deb %s%s %s %s\n", o, u, su, strings.Join(s.Components, " "))
			}
		}
	}
	return []byte(b.String())
}
