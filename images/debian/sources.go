package debian

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// copySources writes the root's apt sources: the user's file (SourcesEnv), or the
// host's Debian ones, or for another suite entries derived from them.
func (r *Root) copySources() error {
	dst := filepath.Join(r.Dir, "etc/apt/sources.list.d")
	old, _ := filepath.Glob(filepath.Join(dst, "*"))
	for _, o := range old {
		os.Remove(o)
	}
	if r.suite() != HostSuite {
		return r.deriveSources(dst, r.used())
	}
	src, data, err := r.userSources()
	if err != nil {
		return err
	}
	if src != "" {
		name := "user.list"
		if bytes.Contains(data, []byte("URIs:")) {
			name = "user.sources"
		}
		return os.WriteFile(filepath.Join(dst, name), data, 0o644)
	}
	n := 0
	for _, f := range hostSourceFiles() {
		data, err := os.ReadFile(f)
		if err != nil || !isDebian(data) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dst, fmt.Sprintf("%02d-%s", n, filepath.Base(f))), data, 0o644); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no Debian apt sources found in /etc/apt; on a non-Debian host set %s to a sources file "+
			"with a bookworm line, e.g. 'deb http://<your Debian mirror>/debian bookworm main'", SourcesEnv)
	}
	return nil
}

// hostSources is the sources file SourcesEnv (or r.Sources) names, or the host's
// /etc/apt sources that name a Debian suite.
func (r *Root) hostSources() (map[string][]byte, error) {
	src, data, err := r.userSources()
	if err != nil {
		return nil, err
	}
	if src != "" {
		return map[string][]byte{src: data}, nil
	}
	out := map[string][]byte{}
	for _, f := range hostSourceFiles() {
		if data, err := os.ReadFile(f); err == nil && isDebian(data) {
			out[f] = data
		}
	}
	return out, nil
}

// userSources is the sources file r.Sources or SourcesEnv names, "" when neither does.
func (r *Root) userSources() (string, []byte, error) {
	src := r.Sources
	if src == "" {
		src = os.Getenv(SourcesEnv)
	}
	if src == "" {
		return "", nil, nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", nil, fmt.Errorf("apt sources (%s): %w", SourcesEnv, err)
	}
	return src, data, nil
}

// hostSourceFiles are the host's apt sources files.
func hostSourceFiles() []string {
	var files []string
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		files = append(files, "/etc/apt/sources.list")
	}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	return files
}

// deriveSources writes the sources for suite, derived from the host's bookworm entries.
func (r *Root) deriveSources(dst, suite string) error {
	files, err := r.hostSources()
	if err != nil {
		return err
	}
	var all []Source
	for f, data := range files {
		srcs, err := ParseSources(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, srcs...)
	}
	derived := ForSuite(all, HostSuite, suite)
	if len(derived) == 0 {
		return fmt.Errorf("no Debian %s entry in the apt sources to derive %s from; set %s to a sources file "+
			"with a line like 'deb http://<your Debian mirror>/debian %s main'", HostSuite, suite, SourcesEnv, suite)
	}
	return os.WriteFile(filepath.Join(dst, "derived-"+suite+".list"), FormatList(derived), 0o644)
}

// isDebian keeps sources that name a Debian suite (bookworm), dropping vendor repos that
// would only slow updates down.
func isDebian(data []byte) bool {
	return regexp.MustCompile(`(?m)^[^#]*\bbookworm\b`).Match(data)
}
