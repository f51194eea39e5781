// Package job reads kmodlab job files: which targets, which matrix of module
// parameters, what to build and deploy, how to set up, stress, collect and tear down,
// and what each cell is expected to show. Nothing here knows about userblk: a user's own
// module and daemon are described the same way.
package job

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/internal/yamlline"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"gopkg.in/yaml.v3"
)

// Job is one job file.
type Job struct {
	Name        string              `yaml:"name"`
	Description string              `yaml:"description"`
	Root        string              `yaml:"root"` // where relative paths start (default: the dir with go.mod above the file)
	Targets     []string            `yaml:"targets"`
	Matrix      map[string][]string `yaml:"matrix"`
	Vars        map[string]string   `yaml:"vars"`
	Build       Build               `yaml:"build"`
	Setup       []Step              `yaml:"setup"`
	Stress      []Step              `yaml:"stress"`
	Teardown    []Step              `yaml:"teardown"`
	Collect     []string            `yaml:"collect"`
	Timeouts    Timeouts            `yaml:"timeouts"`
	Expect      Expect              `yaml:"expect"`
	Guest       Guest               `yaml:"guest"` // packages and in-tree modules the machines need (guest.go)
	// OwnKernels are the user's kernel build directories, by target: a cell on
	// TARGET+own boots that kernel and builds its modules against it (docs/kernels.md).
	OwnKernels map[string]string `yaml:"own_kernels"`
	// KernelFragments are config fragment files merged into every built line
	// (TARGET+FRAGMENT) the job runs, after the line's own (kernel.go).
	KernelFragments []string `yaml:"kernel_fragments"`

	File     string         `yaml:"-"`
	ownLines map[string]int // own_kernels.TARGET -> line
}

// Build lists what is built for each target and copied to the machine.
type Build struct {
	Modules  []Module `yaml:"modules"`
	Binaries []Binary `yaml:"binaries"`
	Files    []File   `yaml:"files"`
	Dest     string   `yaml:"dest"` // directory on the machine, default /root
	// Strict makes the modules' own W=1 warnings fail their build (BUILD-FAILED),
	// as kmodlab run --strict does.
	Strict bool `yaml:"strict"`
}

// Module is an out-of-tree kernel module source directory (with a Kbuild or Makefile).
type Module struct {
	Name string `yaml:"name"` // the .ko's name without .ko
	Dir  string `yaml:"dir"`
}

// Binary is a Go main package, cross-built static for the machine.
type Binary struct {
	Name    string `yaml:"name"`
	Package string `yaml:"package"`
}

// File is copied as is.
type File struct {
	Src  string `yaml:"src"`
	Dest string `yaml:"dest"`
	Mode string `yaml:"mode"`
}

// Step is one shell command on the machine.
type Step struct {
	Name       string            `yaml:"name"`
	Run        string            `yaml:"run"`
	Background bool              `yaml:"background"` // start and go on; its output goes to DEST/<name>.log
	Ready      string            `yaml:"ready"`      // with background: polled until it succeeds
	Timeout    yamlline.Duration `yaml:"timeout"`
	Report     string            `yaml:"report"` // a stress report (JSON with "mismatches") the step writes
	IgnoreFail bool              `yaml:"ignore_failure"`
	// OnFailure says what a failed stress step means: "evidence" (judged with its
	// report; the default for steps with a report) or "infra" (the lab could not
	// judge; the default otherwise).
	OnFailure verdict.Policy `yaml:"on_failure"`
	// KTAP steps (ktap.go): a KUnit test module to load, the suites to read from
	// debugfs, or a program whose stdout is KTAP.
	KUnit  string   `yaml:"kunit"`
	Suites []string `yaml:"suites"`
	KTAP   bool     `yaml:"ktap"`
}

// FailurePolicy is the step's on_failure, with its default.
func (s Step) FailurePolicy() verdict.Policy {
	if s.OnFailure != "" {
		return s.OnFailure
	}
	if s.Report != "" {
		return verdict.PolicyEvidence
	}
	return verdict.PolicyInfra
}

// Timeouts per phase.
type Timeouts struct {
	Boot    yamlline.Duration `yaml:"boot"`
	Setup   yamlline.Duration `yaml:"setup"`
	Stress  yamlline.Duration `yaml:"stress"`
	Collect yamlline.Duration `yaml:"collect"`
}

// Expect says what each cell should show: "reproduces", "crashes", "clean" or
// "cannot-detect".
type Expect struct {
	Default verdict.Expectation            `yaml:"default"`
	Cells   map[string]verdict.Expectation `yaml:"cells"` // cell pattern (path.Match) -> expectation
	// MinEvidence is what a cell must have checked before "nothing diverged" counts
	// as clean; a cell with less is INCONCLUSIVE. Default: {io: 100}.
	MinEvidence *verdict.MinEvidence `yaml:"min_evidence"`
	// MinRate is the share of repeats (--repeat) that must meet the expectation, for
	// flaky bugs; default 1: every repeat.
	MinRate float64 `yaml:"min_rate"`
	// EvidenceFactor sizes stress by evidence: a cell's stress steps stop once it has
	// checked min_evidence × this (nothing diverging), or at their time cap. 0 runs
	// every step to its cap. Default: DefaultEvidenceFactor.
	EvidenceFactor *float64 `yaml:"evidence_factor"`
}

// DefaultEvidenceFactor is expect.evidence_factor when a job does not set it: three
// times what a clean verdict needs, so a repeat that runs slower still clears it.
const DefaultEvidenceFactor = 3

// Factor is the job's evidence factor, with its default.
func (e Expect) Factor() float64 {
	if e.EvidenceFactor == nil {
		return DefaultEvidenceFactor
	}
	return *e.EvidenceFactor
}

// Evidence is the job's min_evidence, with its default.
func (e Expect) Evidence() verdict.MinEvidence {
	if e.MinEvidence == nil {
		return verdict.DefaultMinEvidence
	}
	return *e.MinEvidence
}

// Error is a problem in a job file, at a line.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Load reads and checks a job file. knownTargets says which target names exist
// (built-in images and configured boards); nil skips that check.
func Load(file string, knownTargets func(string) bool) (*Job, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, data, knownTargets)
}

// Parse checks a job file's bytes.
func Parse(file string, data []byte, knownTargets func(string) bool) (*Job, error) {
	var j Job
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&j); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Line: 1, Msg: "empty job file"}
		}
		line, msg := yamlline.Locate(err)
		return nil, &Error{File: file, Line: line, Msg: strings.ReplaceAll(msg, " in type job.", " in ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: file, Line: max(1, extra.Line), Msg: "a second YAML document: a job file holds one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Line: 1, Msg: "after the job: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var root yaml.Node
	yaml.Unmarshal(data, &root)
	j.File = file
	if err := j.check(&root, knownTargets); err != nil {
		return nil, err
	}
	return &j, nil
}

// lineOf finds the line of a key path ("stress", "0", "run") in the document.
func lineOf(root *yaml.Node, keys ...string) int { return yamlline.Of(root, keys...) }

func (j *Job) check(root *yaml.Node, known func(string) bool) error {
	bad := func(field, msg string, keys ...string) error {
		return &Error{File: j.File, Line: lineOf(root, keys...), Field: field, Msg: msg}
	}
	if j.Name == "" {
		return bad("name", "missing")
	}
	if len(j.Targets) == 0 {
		return bad("targets", "at least one target is needed", "targets")
	}
	seenT := map[string]bool{}
	for i, t := range j.Targets {
		where := fmt.Sprintf("targets[%d]", i)
		if p := checkValue(t); p != "" {
			return bad(where, p, "targets", fmt.Sprint(i))
		}
		if seenT[t] {
			return bad(where, fmt.Sprintf("%q is listed twice (its cells would share one results directory)", t), "targets", fmt.Sprint(i))
		}
		seenT[t] = true
		if known != nil && !known(t) {
			return bad(where, fmt.Sprintf("unknown target or board %q", t), "targets", fmt.Sprint(i))
		}
	}
	for _, k := range j.Keys() {
		vals := j.Matrix[k]
		if len(vals) == 0 {
			return bad("matrix."+k, "no values", "matrix", k)
		}
		if !wordRe.MatchString(k) {
			return bad("matrix."+k, "a parameter name must be a word (it is used as {{."+k+"}})", "matrix", k)
		}
		if reservedVar[k] {
			return bad("matrix."+k, fmt.Sprintf("%q is one of the lab's own variables (target, cell, seed, dest)", k), "matrix", k)
		}
		seenV := map[string]bool{}
		for i, v := range vals {
			where := fmt.Sprintf("matrix.%s[%d]", k, i)
			if p := checkValue(v); p != "" {
				return bad(where, p, "matrix", k, fmt.Sprint(i))
			}
			if seenV[v] {
				return bad(where, fmt.Sprintf("%q is listed twice (its cells would share one results directory)", v), "matrix", k, fmt.Sprint(i))
			}
			seenV[v] = true
		}
	}
	for k := range j.Vars {
		if !wordRe.MatchString(k) || reservedVar[k] {
			return bad("vars."+k, fmt.Sprintf("%q: a var name must be a word and not one of the lab's own (target, cell, seed, dest)", k), "vars", k)
		}
	}
	for _, t := range []struct {
		name string
		d    yamlline.Duration
	}{{"boot", j.Timeouts.Boot}, {"setup", j.Timeouts.Setup}, {"stress", j.Timeouts.Stress}, {"collect", j.Timeouts.Collect}} {
		if t.d < 0 {
			return bad("timeouts."+t.name, fmt.Sprintf("%s: a timeout cannot be negative", time.Duration(t.d)), "timeouts", t.name)
		}
	}
	if len(j.Stress) == 0 {
		return bad("stress", "at least one stress step is needed")
	}
	if err := j.checkGuest(root); err != nil {
		return err
	}
	if err := j.checkKernels(root); err != nil {
		return err
	}
	for _, ph := range []struct {
		phase string
		steps []Step
	}{{"setup", j.Setup}, {"stress", j.Stress}, {"teardown", j.Teardown}} {
		phase, ss := ph.phase, ph.steps
		names := map[string]bool{}
		for i, s := range ss {
			where := fmt.Sprintf("%s[%d]", phase, i)
			name := StepName(phase, i, s)
			if s.Name != "" {
				if p := checkName(s.Name); p != "" {
					return bad(where+".name", p, phase, fmt.Sprint(i), "name")
				}
			}
			if names[name] {
				return bad(where+".name", fmt.Sprintf("%q: two %s steps have this name (they would share a log file)", name, phase), phase, fmt.Sprint(i), "name")
			}
			names[name] = true
			if s.Background {
				if p := reservedFile(name + ".log"); p != "" {
					return bad(where+".name", fmt.Sprintf("%q: its log %s.log is collected into the results directory, where the lab writes %s", name, name, p), phase, fmt.Sprint(i), "name")
				}
			}
			if s.Timeout < 0 {
				return bad(where+".timeout", fmt.Sprintf("%s: a timeout cannot be negative", time.Duration(s.Timeout)), phase, fmt.Sprint(i), "timeout")
			}
			if strings.TrimSpace(s.Command()) == "" {
				return bad(where+".run", "missing", phase, fmt.Sprint(i))
			}
			if f, p := s.checkTests(); p != "" {
				return bad(where+"."+f, p, phase, fmt.Sprint(i), f)
			}
			if s.Ready != "" && !s.Background {
				return bad(where+".ready", "only a background step has a ready check", phase, fmt.Sprint(i), "ready")
			}
			if s.OnFailure != "" && s.OnFailure != verdict.PolicyInfra && s.OnFailure != verdict.PolicyEvidence {
				return bad(where+".on_failure", fmt.Sprintf("%q: want infra or evidence", s.OnFailure), phase, fmt.Sprint(i), "on_failure")
			}
			for _, text := range []string{s.Command(), s.Ready, s.Report} {
				if _, err := j.tmpl(text); err != nil {
					return bad(where+".run", err.Error(), phase, fmt.Sprint(i), "run")
				}
			}
		}
	}
	// A module or a binary: its fields, a name the lab can use, listed once.
	listed := func(kind string, i int, name string, has bool, need string, seen map[string]bool) error {
		at, idx := fmt.Sprintf("build.%s[%d]", kind, i), fmt.Sprint(i)
		if !has {
			return bad(at, "needs "+need, "build", kind, idx)
		}
		if p := checkName(name); p != "" {
			return bad(at+".name", p, "build", kind, idx, "name")
		}
		if seen[name] {
			return bad(at+".name", fmt.Sprintf("%q is listed twice", name), "build", kind, idx, "name")
		}
		seen[name] = true
		return nil
	}
	mods := map[string]bool{}
	for i, m := range j.Build.Modules {
		if err := listed("modules", i, m.Name, m.Name != "" && m.Dir != "", "name and dir", mods); err != nil {
			return err
		}
		if _, err := os.Stat(j.Path(m.Dir)); err != nil {
			return bad(fmt.Sprintf("build.modules[%d].dir", i), fmt.Sprintf("%s: no such directory", j.Path(m.Dir)), "build", "modules", fmt.Sprint(i), "dir")
		}
	}
	bins := map[string]bool{}
	for i, b := range j.Build.Binaries {
		if err := listed("binaries", i, b.Name, b.Name != "" && b.Package != "", "name and package", bins); err != nil {
			return err
		}
	}
	for i, f := range j.Build.Files {
		if f.Mode != "" {
			if p := checkMode(f.Mode); p != "" {
				return bad(fmt.Sprintf("build.files[%d].mode", i), p, "build", "files", fmt.Sprint(i), "mode")
			}
		}
		if f.Src == "" {
			return bad(fmt.Sprintf("build.files[%d].src", i), "missing", "build", "files", fmt.Sprint(i))
		}
		if _, err := os.Stat(j.Path(f.Src)); err != nil {
			return bad(fmt.Sprintf("build.files[%d].src", i), fmt.Sprintf("%s: no such file", j.Path(f.Src)), "build", "files", fmt.Sprint(i), "src")
		}
	}
	check := func(field string, v verdict.Expectation, keys ...string) error {
		if v != verdict.ExpectReproduces && v != verdict.ExpectClean && v != verdict.ExpectCrashes && v != verdict.ExpectCannotDetect && v != verdict.ExpectBuildFails {
			return bad(field, fmt.Sprintf("%q: want %q, %q, %q, %q or %q", v, verdict.ExpectReproduces, verdict.ExpectCrashes, verdict.ExpectClean, verdict.ExpectCannotDetect, verdict.ExpectBuildFails), keys...)
		}
		return nil
	}
	for i, c := range j.Collect {
		base := path.Base(c)
		switch {
		case strings.TrimSpace(c) == "":
			return bad(fmt.Sprintf("collect[%d]", i), "empty", "collect", fmt.Sprint(i))
		case strings.Contains(base, "{{"):
			return bad(fmt.Sprintf("collect[%d]", i), fmt.Sprintf("%q: the file's own name cannot come from a template (it names the copy in the results directory); a directory can", c), "collect", fmt.Sprint(i))
		case !nameRe.MatchString(base) || strings.Contains(base, ".."):
			return bad(fmt.Sprintf("collect[%d]", i), fmt.Sprintf("%q: the copy in the results directory is named after the file: only letters, digits, '.', '_', '+' and '-'", c), "collect", fmt.Sprint(i))
		}
		if p := reservedFile(base); p != "" {
			return bad(fmt.Sprintf("collect[%d]", i), fmt.Sprintf("%q: the lab writes %s into the results directory itself", c, p), "collect", fmt.Sprint(i))
		}
		if _, err := j.tmpl(c); err != nil {
			return bad(fmt.Sprintf("collect[%d]", i), err.Error(), "collect", fmt.Sprint(i))
		}
	}
	if !share(j.Expect.MinRate) {
		return bad("expect.min_rate", fmt.Sprintf("%v: want a share between 0 and 1", j.Expect.MinRate), "expect", "min_rate")
	}
	if f := j.Expect.EvidenceFactor; f != nil && !(*f >= 0 && *f <= 1000) {
		return bad("expect.evidence_factor", fmt.Sprintf("%v: want 0 (run stress to its cap) or a factor up to 1000", *f), "expect", "evidence_factor")
	}
	if m := j.Expect.MinEvidence; m != nil && (m.Transactions < 0 || m.IO < 0 || m.Ops < 0) {
		return bad("expect.min_evidence", "counts cannot be negative", "expect", "min_evidence")
	}
	if j.Expect.Default == "" {
		j.Expect.Default = verdict.ExpectClean
	}
	if err := check("expect.default", j.Expect.Default, "expect", "default"); err != nil {
		return err
	}
	for pat, v := range j.Expect.Cells {
		if err := check("expect.cells."+pat, v, "expect", "cells", pat); err != nil {
			return err
		}
		if _, err := path.Match(pat, ""); err != nil {
			return bad("expect.cells."+pat, "bad pattern: "+err.Error(), "expect", "cells", pat)
		}
		matched := false
		for _, c := range j.Cells() {
			if ok, _ := path.Match(pat, c.ID); ok {
				matched = true
			}
		}
		if !matched {
			return bad("expect.cells."+pat, "matches no cell of this job", "expect", "cells", pat)
		}
	}
	return nil
}

func (j *Job) Path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(j.RootDir(), p)
}

// RootDir is where relative paths start: root: if given (relative to the file), else
// the nearest directory above the file holding go.mod, else the file's directory.
func (j *Job) RootDir() string {
	dir := filepath.Dir(j.File)
	if j.Root != "" {
		if filepath.IsAbs(j.Root) {
			return j.Root
		}
		return filepath.Join(dir, j.Root)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// reservedVar are the template variables the lab sets itself (Expand).
var reservedVar = map[string]bool{"target": true, "cell": true, "seed": true, "dest": true}

// StepName is a step's name, or phase and index ("setup0") when it has none.
func StepName(phase string, i int, s Step) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("%s%d", phase, i)
}

// Dest is where artifacts go on the machine.
func (j *Job) Dest() string {
	if j.Build.Dest == "" {
		return "/root"
	}
	return j.Build.Dest
}
