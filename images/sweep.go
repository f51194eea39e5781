package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/images/debian"
)

// SweptKernel is one kernel whose headers a suite serves for a target's flavour: the
// target's line with Kernel set to that kernel, for a compile-only build (no image).
type SweptKernel struct {
	Target  *Target // Name stays the line's, so the kernel a line boots shares its headers cache
	Suite   string  // the index that lists it (bookworm, bookworm-security, trixie-backports)
	ABI     string  // 6.1.0-47, 6.12.107+deb12
	Release string  // uname -r: 6.1.0-47-amd64
	Version string  // the headers package's version
	Pinned  bool    // the kernel the line boots (its recipe's; not known for a line that resolves its newest)
}

// HeadersPackage is a linux-headers-ABI-FLAVOUR package of an index, with the
// packages a build needs besides it.
type HeadersPackage struct {
	Name    string
	ABI     string
	Release string
	Version string
	Suite   string
	Common  string // linux-headers-ABI-common (Architecture: all), at Version
	Kbuild  string // linux-kbuild-X, for the host's architecture
	// KbuildMin is the kbuild version the headers ask for at least ("" = any).
	KbuildMin string
}

// abiPart matches a Debian kernel ABI: 6.1.0-47, 6.12.107+deb12, 6.12.12+bpo,
// 6.1.0-0.deb11.13.
const abiPart = `(\d+\.\d+\.\d+(?:-[0-9][0-9.a-z]*|\+[a-z]+\d*))`

// Flavour is the kernel flavour of a line (armmp-lpae, 686-pae, amd64).
func Flavour(k Kernel) string {
	if k.Resolve != "" {
		return k.Resolve
	}
	if m := regexp.MustCompile(`^` + abiPart + `-(.+)$`).FindStringSubmatch(k.Release); m != nil {
		return m[2]
	}
	return ""
}

// FindHeaders lists the headers packages of one flavour among an index's stanzas
// (metapackages such as linux-headers-6.12-amd64 and other flavours are left out).
func FindHeaders(stanzas []debian.Stanza, flavour, suite string) []HeadersPackage {
	re := regexp.MustCompile(`^linux-headers-` + abiPart + `-` + regexp.QuoteMeta(flavour) + `$`)
	var out []HeadersPackage
	for _, s := range stanzas {
		m := re.FindStringSubmatch(s["Package"])
		if m == nil {
			continue
		}
		h := HeadersPackage{Name: s["Package"], ABI: m[1], Release: m[1] + "-" + flavour, Version: s["Version"], Suite: suite}
		for _, d := range strings.Split(s["Depends"], ",") {
			for _, alt := range strings.Split(d, "|") {
				name, rel, _ := strings.Cut(strings.TrimSpace(alt), " ")
				rel = strings.Trim(strings.TrimSpace(rel), "()")
				switch {
				case strings.HasPrefix(name, "linux-headers-") && strings.HasSuffix(name, "-common") && h.Common == "":
					h.Common = name
				case strings.HasPrefix(name, "linux-kbuild-") && h.Kbuild == "":
					h.Kbuild = name
					if v, ok := strings.CutPrefix(rel, ">="); ok {
						h.KbuildMin = strings.TrimSpace(v)
					} else if v, ok := strings.CutPrefix(rel, "="); ok {
						h.KbuildMin = strings.TrimSpace(v)
					}
				}
			}
		}
		if h.Common == "" {
			h.Common = "linux-headers-" + h.ABI + "-common"
		}
		if h.Kbuild == "" {
			h.Kbuild = "linux-kbuild-" + h.ABI
		}
		out = append(out, h)
	}
	return out
}

// PickKbuild chooses the kbuild version for headers at version: the same version when
// the index has it, else the newest at least min (Debian keeps one kbuild package per
// kernel series, and its newest build serves the older ABIs of that series).
func PickKbuild(version, min string, avail []string) (string, bool) {
	best := ""
	for _, v := range avail {
		if v == version {
			return v, true
		}
		if min != "" && debian.CompareVersions(v, min) < 0 {
			continue
		}
		if best == "" || debian.CompareVersions(v, best) > 0 {
			best = v
		}
	}
	return best, best != ""
}

// SweepSuites are the suites a line's kernels come from: its own (whose root also
// reads -updates and -security) and its -backports, which sid does not have.
func SweepSuites(t *Target) []string {
	if noBackports[t.Suite] {
		return []string{t.Suite}
	}
	return []string{t.Suite, t.Suite + "-backports"}
}

var noBackports = map[string]bool{"sid": true, "unstable": true, "experimental": true}

// listSuite is the suite of an apt list file ("…_dists_bookworm-security_main_binary-amd64_Packages").
var listSuite = regexp.MustCompile(`_dists_([^_]+)_`)

// SweepKernels lists every kernel whose headers the suites serve for t's flavour
// (default: SweepSuites), newest last, each as t on that kernel. A suite the archive
// does not serve (no -backports for it) is a note, not an error.
func (b *Builder) SweepKernels(ctx context.Context, t *Target, suites []string) ([]SweptKernel, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A line that resolves its kernel (sid) is not resolved here: the sweep takes every
	// kernel of its lists, the newest (the one its image boots) with the same packages,
	// so the same headers tree.
	if len(t.Fragments) > 0 {
		return nil, nil, fmt.Errorf("%s: a kernel the lab builds has no headers packages to sweep; name the Debian line (%s)", t.Name, t.Base)
	}
	if len(suites) == 0 {
		suites = SweepSuites(t)
	}
	var notes []string
	lists := map[string]string{}
	for _, suite := range suites {
		root, err := b.rootFor(ctx, suite)
		if err != nil {
			if strings.HasSuffix(suite, "-backports") {
				notes = append(notes, fmt.Sprintf("%s: %s not served: %s", t.Name, suite, firstLineOf(err.Error())))
				continue
			}
			return nil, notes, err
		}
		lists[suite] = filepath.Join(root.Dir, "state/lists")
	}
	ks, more, err := KernelsInLists(t, suites, lists)
	return ks, append(notes, more...), err
}

// KernelsInLists is SweepKernels on lists already fetched: each suite's apt lists
// directory (suites without one are skipped).
func KernelsInLists(t *Target, suites []string, lists map[string]string) ([]SweptKernel, []string, error) {
	flavour := Flavour(t.Kernel)
	if flavour == "" {
		return nil, nil, fmt.Errorf("%s: no kernel flavour in %q", t.Name, t.Kernel.Release)
	}
	var notes []string
	byRelease := map[string]SweptKernel{}
	for _, suite := range suites {
		dir, ok := lists[suite]
		if !ok {
			continue
		}
		idx, err := readLists(dir, suite)
		if err != nil {
			return nil, notes, err
		}
		for _, h := range idx.headers(t.DebArch, flavour) {
			k, err := sweptKernel(t, suite, h, idx.versions(hostDebArch(), h.Kbuild))
			if err != nil {
				notes = append(notes, err.Error())
				continue
			}
			if old, ok := byRelease[k.Release]; ok && debian.CompareVersions(old.Version, k.Version) >= 0 {
				continue
			}
			byRelease[k.Release] = k
		}
	}
	var out []SweptKernel
	for _, k := range byRelease {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return debian.CompareVersions(out[i].Version, out[j].Version) < 0 })
	return out, notes, nil
}

func sweptKernel(t *Target, suite string, h HeadersPackage, kbuilds []string) (SweptKernel, error) {
	k := SweptKernel{Suite: h.Suite, ABI: h.ABI, Release: h.Release, Version: h.Version}
	if h.Release == t.Kernel.Release && h.Version == t.Kernel.Version {
		k.Target, k.Pinned = t, true // the same packages, the same cached headers
		return k, nil
	}
	kv, ok := PickKbuild(h.Version, h.KbuildMin, kbuilds)
	if !ok {
		return k, fmt.Errorf("%s %s: no %s for %s (want >= %s)", t.Name, h.Release, h.Kbuild, hostDebArch(), h.KbuildMin)
	}
	kb := h.Kbuild
	if kv != h.Version {
		kb += ":" + hostDebArch() + "=" + kv
	}
	c := *t
	c.Suite = suite
	c.Kernel = Kernel{Release: h.Release, Version: h.Version, Image: "linux-image-" + h.Release,
		Headers: []string{h.Name, h.Common + ":all"}, Kbuild: kb}
	k.Target = &c
	return k, nil
}

// index is the stanzas of a root's lists, by architecture, with their suites.
type index struct {
	byArch map[string][]suiteStanza
}

type suiteStanza struct {
	suite string
	s     debian.Stanza
}

// readLists reads the Packages lists of a root that belong to suite: for a
// -backports root only that suite's (its base suite is there for libraries), for any
// other the suite and its -updates and -security.
func readLists(dir, suite string) (*index, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*_Packages"))
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no package lists (apt-get update failed?)", dir)
	}
	idx := &index{byArch: map[string][]suiteStanza{}}
	for _, f := range files {
		m := listSuite.FindStringSubmatch(filepath.Base(f))
		arch := ""
		if i := strings.LastIndex(f, "binary-"); i >= 0 {
			arch = strings.TrimSuffix(f[i+len("binary-"):], "_Packages")
		}
		if m == nil || arch == "" || !listBelongs(m[1], suite) {
			continue
		}
		stanzas, err := kernelStanzas(f)
		if err != nil {
			return nil, err
		}
		for _, s := range stanzas {
			idx.byArch[arch] = append(idx.byArch[arch], suiteStanza{m[1], s})
		}
	}
	return idx, nil
}

func listBelongs(listSuite, suite string) bool {
	if strings.HasSuffix(suite, "-backports") {
		return listSuite == suite
	}
	return listSuite == suite || (strings.HasPrefix(listSuite, suite+"-") && !strings.HasSuffix(listSuite, "-backports"))
}

func (x *index) headers(arch, flavour string) []HeadersPackage {
	var out []HeadersPackage
	bySuite := map[string][]debian.Stanza{}
	var order []string
	for _, s := range x.byArch[arch] {
		if _, ok := bySuite[s.suite]; !ok {
			order = append(order, s.suite)
		}
		bySuite[s.suite] = append(bySuite[s.suite], s.s)
	}
	sort.Strings(order)
	for _, su := range order {
		out = append(out, FindHeaders(bySuite[su], flavour, su)...)
	}
	return out
}

func (x *index) versions(arch, pkg string) []string {
	var v []string
	for _, s := range x.byArch[arch] {
		if s.s["Package"] == pkg {
			v = append(v, s.s["Version"])
		}
	}
	return v
}

func firstLineOf(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// HasHeaders says whether t's headers tree is in the cache already.
func (b *Builder) HasHeaders(t *Target) bool {
	_, err := os.Stat(filepath.Join(debianHeadersDir(b, t), ".complete"))
	return err == nil
}

var (
	stanzaMu    sync.Mutex
	stanzaCache = map[string]cachedStanzas{}
)

type cachedStanzas struct {
	mod     time.Time
	size    int64
	stanzas []debian.Stanza
}

// kernelStanzas are the linux-headers-* and linux-kbuild-* stanzas of a Packages list
// (only those are parsed: a suite's list is tens of MB), read once per process while
// the file does not change.
func kernelStanzas(file string) ([]debian.Stanza, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	stanzaMu.Lock()
	defer stanzaMu.Unlock()
	if c, ok := stanzaCache[file]; ok && c.mod.Equal(st.ModTime()) && c.size == st.Size() {
		return c.stanzas, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var keep [][]byte
	for _, p := range bytes.Split(data, []byte("\n\n")) {
		p = bytes.TrimLeft(p, "\n")
		if bytes.HasPrefix(p, []byte("Package: linux-headers-")) || bytes.HasPrefix(p, []byte("Package: linux-kbuild-")) {
			keep = append(keep, p)
		}
	}
	out := debian.ParsePackages(bytes.Join(keep, []byte("\n\n")), "Package", "Version", "Depends", "Architecture")
	stanzaCache[file] = cachedStanzas{st.ModTime(), st.Size(), out}
	return out, nil
}
