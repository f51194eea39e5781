// Package debian fetches Debian packages through a private apt root inside kmodlab's
// cache: the host's own sources list and keyrings, but its own package lists, so no root,
// no `dpkg --add-architecture` and no change to the host are needed. Packages are only
// downloaded and unpacked (`dpkg-deb -x`): no maintainer script ever runs.
package debian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// SourcesEnv names a file in sources.list or deb822 format that replaces the host's
// sources (for non-Debian hosts, or to point at a snapshot).
const SourcesEnv = "KMODLAB_APT_SOURCES"

// Root is a private apt configuration under Dir.
type Root struct {
	Dir string
	// Suite is the Debian suite this root serves (default bookworm, the host's). For
	// another suite the sources are derived from the host's (or SourcesEnv's) bookworm
	// entries with only the suite changed.
	Suite   string
	Sources string // optional sources file; default: the host's /etc/apt sources
	// Architectures are the Debian architectures whose package lists the root fetches:
	// the host's and every guest's (the images package takes them from the recipes).
	Architectures []string
	Log           *slog.Logger
	// MaxAge is how old the package lists may be before Update fetches them again.
	MaxAge time.Duration
}

func (r *Root) conf() string { return filepath.Join(r.Dir, "apt.conf") }

func (r *Root) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

// Init writes the private configuration and copies the sources.
func (r *Root) Init() error {
	if len(r.Architectures) == 0 {
		return fmt.Errorf("apt root %s: no architectures", r.Dir)
	}
	for _, d := range []string{"etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d",
		"etc/apt/trusted.gpg.d", "state/lists/partial", "cache/archives/partial", "debs"} {
		if err := os.MkdirAll(filepath.Join(r.Dir, d), 0o755); err != nil {
			return err
		}
	}
	status := filepath.Join(r.Dir, "state/status")
	if _, err := os.Stat(status); err != nil {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return err
		}
	}
	if err := r.copySources(); err != nil {
		return err
	}
	var b strings.Builder
	d := r.Dir + "/"
	fmt.Fprintf(&b, "Dir %q;\nDir::State %q;\nDir::State::status %q;\nDir::Cache %q;\nDir::Etc %q;\n",
		d, d+"state/", d+"state/status", d+"cache/", d+"etc/apt/")
	b.WriteString("Dir::Etc::TrustedParts \"/usr/share/keyrings/\";\n")
	b.WriteString("Dir::Etc::Trusted \"/etc/apt/trusted.gpg\";\n")
	b.WriteString("APT::Architectures {")
	for _, a := range r.Architectures {
		fmt.Fprintf(&b, " %q;", a)
	}
	b.WriteString(" };\nAcquire::Languages \"none\";\nDebug::NoLocking \"1\";\n")
	if os.Geteuid() == 0 {
		b.WriteString("APT::Sandbox::User \"root\";\n")
	}
	return os.WriteFile(r.conf(), []byte(b.String()), 0o644)
}

// HostSuite is the suite the host's sources are expected to name.
const HostSuite = "bookworm"

func (r *Root) suite() string {
	if r.Suite == "" {
		return HostSuite
	}
	return r.Suite
}

// used is the suite name the root's lists were fetched under: the suite itself, or an
// alias of it (stable, testing, unstable) when the mirror serves the codename's indexes
// inconsistently but the alias's signed Release names the same codename.
func (r *Root) used() string {
	if b, err := os.ReadFile(filepath.Join(r.Dir, "state/suite")); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b))
	}
	return r.suite()
}

// aliases are the archive's moving suite names; a codename's indexes may be fetched
// through one of them when its Release names that codename.
var aliases = []string{"stable", "testing", "unstable", "oldstable"}

func (r *Root) apt(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "APT_CONFIG="+r.conf(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return out.Bytes(), fmt.Errorf("%s: %w (install Debian's apt and dpkg)", args[0], err)
	}
	return out.Bytes(), err
}

// Update fetches package lists when they are missing or older than MaxAge. A partial
// failure (one index the mirror serves badly) is logged, not fatal: the pinned packages
// are checked one by one in Download.
func (r *Root) Update(ctx context.Context, force bool) error {
	if err := r.Init(); err != nil {
		return err
	}
	if !force && r.fresh() {
		return nil
	}
	r.log().Info("apt update (private root)", "dir", r.Dir, "suite", r.suite())
	out, err := r.update(ctx)
	if err != nil && r.suite() != HostSuite && !strings.HasSuffix(r.suite(), "-backports") {
		// A line's suite must have every architecture's index: try the aliases.
		for _, alias := range aliases {
			if r.complete() {
				break
			}
			r.log().Warn("the mirror's indexes for this suite are incomplete; trying an alias", "suite", r.suite(), "alias", alias, "detail", firstErr(out))
			if err := os.WriteFile(filepath.Join(r.Dir, "state/suite"), []byte(alias), 0o644); err != nil {
				return err
			}
			if err := r.Init(); err != nil {
				return err
			}
			out, err = r.update(ctx)
			if r.complete() && r.codename(alias) == r.suite() {
				err = nil
				break
			}
			if r.codename(alias) != r.suite() {
				os.RemoveAll(filepath.Join(r.Dir, "state/lists"))
				os.MkdirAll(filepath.Join(r.Dir, "state/lists/partial"), 0o755)
			}
		}
		if !r.complete() {
			os.Remove(filepath.Join(r.Dir, "state/suite"))
			r.Init()
			return fmt.Errorf("apt-get update for %s: the mirror serves no complete, correctly signed index for %s (nor under %s); "+
				"try later or set %s: %s", r.suite(), strings.Join(r.Architectures, ", "), strings.Join(aliases, ", "), SourcesEnv, firstErr(out))
		}
	}
	if err != nil {
		lists, _ := filepath.Glob(filepath.Join(r.Dir, "state/lists/*_Packages*"))
		if len(lists) == 0 {
			return fmt.Errorf("apt-get update in %s failed: %w\n%s", r.Dir, err, tail(out, 15))
		}
		r.log().Warn("apt-get update reported errors; going on with the lists it got", "detail", firstErr(out))
	}
	return os.WriteFile(r.stamp(), r.stampText(), 0o644)
}

func (r *Root) stamp() string { return filepath.Join(r.Dir, "state/updated") }

// stampText is what the stamp of a finished update holds: the architectures its lists
// were fetched for.
func (r *Root) stampText() []byte { return []byte(strings.Join(r.Architectures, " ") + "\n") }

// fresh reports whether the lists are younger than MaxAge and were fetched for the
// root's architectures: a new target's architecture makes them stale however young.
func (r *Root) fresh() bool {
	st, err := os.Stat(r.stamp())
	if err != nil {
		return false
	}
	age := r.MaxAge
	if age == 0 {
		age = 24 * time.Hour
	}
	had, _ := os.ReadFile(r.stamp())
	return time.Since(st.ModTime()) < age && bytes.Equal(had, r.stampText())
}

// update runs apt-get update; a Release file past its Valid-Until (a mirror that lags,
// which sid's short validity shows first) is accepted with a warning, its signature
// still checked.
func (r *Root) update(ctx context.Context) ([]byte, error) {
	out, err := r.apt(ctx, r.Dir, "apt-get", "-q", "update")
	if bytes.Contains(out, []byte("is expired")) {
		r.log().Warn("the mirror's Release file is past its Valid-Until; using it anyway (the signature is still checked)", "suite", r.used())
		if werr := os.WriteFile(filepath.Join(r.Dir, "etc/apt/apt.conf.d/50valid-until"),
			[]byte("Acquire::Check-Valid-Until \"false\";\n"), 0o644); werr != nil {
			return out, werr
		}
		out, err = r.apt(ctx, r.Dir, "apt-get", "-q", "update")
	}
	return out, err
}

// complete reports whether the lists hold a Packages index of the used suite for every
// architecture.
func (r *Root) complete() bool {
	for _, a := range r.Architectures {
		m, _ := filepath.Glob(filepath.Join(r.Dir, "state/lists", "*_dists_"+r.used()+"_*binary-"+a+"_Packages"))
		if len(m) == 0 {
			return false
		}
	}
	return true
}

// codename reads Codename: from the fetched (signature-checked) Release of suite.
func (r *Root) codename(suite string) string {
	m, _ := filepath.Glob(filepath.Join(r.Dir, "state/lists", "*_dists_"+suite+"_InRelease"))
	for _, f := range m {
		data, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "Codename:"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// ShowField returns one field of the candidate version of a package (apt-cache show).
func (r *Root) ShowField(ctx context.Context, pkg, field string) (string, error) {
	out, err := r.apt(ctx, r.Dir, "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", fmt.Errorf("no package %s in %s", pkg, r.suite())
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}

// Has reports whether the suite's lists know a package for an architecture.
func (r *Root) Has(ctx context.Context, name, arch string) bool {
	out, _ := r.apt(ctx, r.Dir, "apt-cache", "madison", name+":"+arch)
	return len(bytes.TrimSpace(out)) > 0
}

// SuiteName is the suite this root serves.
func (r *Root) SuiteName() string { return r.suite() }

// Download fetches each package spec (name:arch[=version]) into the root's debs/ folder
// unless a file for it is there already, and returns the .deb paths in spec order.
func (r *Root) Download(ctx context.Context, specs []string) ([]string, error) {
	debs := filepath.Join(r.Dir, "debs")
	var paths, missing []string
	for _, s := range specs {
		if p := r.cached(s); p != "" {
			paths = append(paths, p)
			continue
		}
		missing = append(missing, s)
	}
	if len(missing) > 0 {
		r.log().Info("downloading packages", "count", len(missing))
		out, err := r.apt(ctx, debs, append([]string{"apt-get", "-q", "download"}, missing...)...)
		if err != nil {
			return nil, r.explain(ctx, missing, out, err)
		}
	}
	paths = paths[:0]
	for _, s := range specs {
		p := r.cached(s)
		if p == "" {
			return nil, fmt.Errorf("package %s: apt-get download left no .deb in %s", s, debs)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// DownloadClosure fetches packages for arch with everything they depend on (not what
// they recommend) into dir, as apt resolves it against an empty system, and returns the
// .deb files of arch or "all" (dependencies apt satisfies with the host's architecture
// are left out).
func (r *Root) DownloadClosure(ctx context.Context, names []string, arch, dir string) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "partial"), 0o755); err != nil {
		return nil, err
	}
	status := filepath.Join(dir, "empty-status")
	if err := os.WriteFile(status, nil, 0o644); err != nil {
		return nil, err
	}
	args := []string{"apt-get", "-q", "-y", "install", "--download-only", "--no-install-recommends",
		"-o", "Dir::Cache::Archives=" + dir + "/", "-o", "Dir::State::status=" + status}
	for _, n := range names {
		args = append(args, n+":"+arch)
	}
	out, err := r.apt(ctx, r.Dir, args...)
	if err != nil {
		return nil, fmt.Errorf("apt-get install --download-only %s for %s in %s: %w\n%s", strings.Join(names, " "), arch, r.suite(), err, tail(out, 10))
	}
	var debs []string
	for _, a := range []string{arch, "all"} {
		m, _ := filepath.Glob(filepath.Join(dir, "*_"+a+".deb"))
		debs = append(debs, m...)
	}
	if len(debs) == 0 {
		return nil, fmt.Errorf("apt-get fetched no package for %s", strings.Join(names, " "))
	}
	return debs, nil
}

// cached finds the .deb for a spec: exact version when pinned, else the newest candidate.
func (r *Root) cached(spec string) string {
	name, arch, version := SplitSpec(spec)
	pat := fmt.Sprintf("%s_*_%s.deb", name, arch)
	if version != "" {
		pat = fmt.Sprintf("%s_%s_%s.deb", name, strings.ReplaceAll(version, ":", "%3a"), arch)
	}
	m, _ := filepath.Glob(filepath.Join(r.Dir, "debs", pat))
	if len(m) == 0 && arch != "all" {
		// Arch-qualified names may resolve to an Architecture: all package.
		m, _ = filepath.Glob(filepath.Join(r.Dir, "debs", strings.TrimSuffix(pat, "_"+arch+".deb")+"_all.deb"))
	}
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

// explain turns apt's failure into one line per missing package, with the fix.
func (r *Root) explain(ctx context.Context, specs []string, out []byte, err error) error {
	var msgs []string
	for _, s := range specs {
		name, arch, version := SplitSpec(s)
		q := name + ":" + arch
		pol, _ := r.apt(ctx, r.Dir, "apt-cache", "madison", q)
		switch {
		case len(bytes.TrimSpace(pol)) == 0:
			msgs = append(msgs, fmt.Sprintf("%s: not known to the mirror for %s (is %s in the sources? try: kmodlab images build --refresh)", name, arch, arch))
		case version != "" && !bytes.Contains(pol, []byte("| "+version+" |")):
			msgs = append(msgs, fmt.Sprintf("%s: pinned version %s is no longer served (the mirror has: %s); bump kernel.version/release (or lines.LINE.kernel) in the recipe under images/recipes",
				q, version, strings.Join(versions(pol), ", ")))
		}
	}
	if len(msgs) == 0 {
		return fmt.Errorf("apt-get download: %w: %s\n%s", err, lastE(out), tail(out, 15))
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func versions(madison []byte) []string {
	var v []string
	for _, l := range strings.Split(string(madison), "\n") {
		f := strings.Split(l, "|")
		if len(f) >= 2 {
			v = append(v, strings.TrimSpace(f[1]))
		}
	}
	return v
}

// SplitSpec splits name:arch=version.
func SplitSpec(spec string) (name, arch, version string) {
	name = spec
	if i := strings.Index(name, "="); i >= 0 {
		name, version = name[:i], name[i+1:]
	}
	if i := strings.Index(name, ":"); i >= 0 {
		name, arch = name[:i], name[i+1:]
	}
	return name, arch, version
}

// Extract unpacks a .deb's files into dir (dpkg-deb -x: no scripts run).
func Extract(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(deb), err, bytes.TrimSpace(out))
	}
	return nil
}

// FixAbsoluteLinks rewrites absolute symlinks under dir so they point inside dir.
func FixAbsoluteLinks(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil || !filepath.IsAbs(target) {
			return err
		}
		rel, err := filepath.Rel(filepath.Dir(p), filepath.Join(dir, target))
		if err != nil {
			return err
		}
		os.Remove(p)
		return os.Symlink(rel, p)
	})
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lastE is apt's own "E:" line (what failed: "Failed to fetch … 404 Not Found"), or its last line.
func lastE(b []byte) string {
	e := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "E:") {
			e = strings.TrimSpace(strings.TrimPrefix(l, "E:"))
		}
	}
	if e == "" {
		return tail(b, 1)
	}
	return e
}

func firstErr(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "E:") || strings.HasPrefix(l, "Err:") {
			return strings.TrimSpace(l)
		}
	}
	return tail(b, 1)
}
