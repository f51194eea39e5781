package job

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

func (j *Job) tmpl(text string) (*template.Template, error) {
	return template.New("step").Option("missingkey=error").Funcs(template.FuncMap{"raw": raw}).Parse(text)
}

// Template values are shell-quoted. A step's run and ready are shell commands on the
// machine, often a root shell on real hardware, and their values come from the job's
// vars and matrix and from --set on the command line: {{.fuzz}} with --set
// fuzz='1s; touch /tmp/owned #' must be one argument, not a second command. So every
// value is inserted as one shell word (ShellWord): as it is when it holds only
// characters no shell treats specially (what every bundled job uses, so their
// commands read as before), else single-quoted. {{raw .x}} inserts a value as it is,
// for a var meant to hold several words; docs/jobs.md says when that is safe.

// shellValue is a template value that prints as one shell word.
type shellValue string

func (v shellValue) String() string { return ShellWord(string(v)) }

// raw is the opt-out: the value as written.
func raw(v any) string {
	if s, ok := v.(shellValue); ok {
		return string(s)
	}
	return fmt.Sprint(v)
}

// safeWord is what a shell reads as one literal word, in any position.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9._/:=@%+,-]+$`)

// ShellWord is s as one shell word: s itself when it needs no quoting, else
// single-quoted (runner.Quote).
func ShellWord(s string) string {
	if safeWord.MatchString(s) {
		return s
	}
	return runner.Quote(s)
}

// Path resolves a path from the job file relative to the job's root.

// Expand fills a step's shell command (run, ready) for a cell: matrix values, vars
// (with extra, the --set overrides), target, cell, seed, dest; each value shell-quoted
// (ShellWord).
func (j *Job) Expand(text string, c Cell, seed int64, extra map[string]string) (string, error) {
	return j.expand(text, c, seed, extra, func(s string) any { return shellValue(s) })
}

// ExpandPath fills a file path (a step's report, a collect entry) with the values as
// they are: a path is not read by a shell (the lab quotes it where one does).
func (j *Job) ExpandPath(text string, c Cell, seed int64, extra map[string]string) (string, error) {
	return j.expand(text, c, seed, extra, func(s string) any { return s })
}

func (j *Job) expand(text string, c Cell, seed int64, extra map[string]string, val func(string) any) (string, error) {
	t, err := j.tmpl(text)
	if err != nil {
		return "", err
	}
	data := map[string]any{}
	for k, v := range j.Vars {
		data[k] = val(v)
	}
	for k, v := range extra {
		data[k] = val(v)
	}
	for k, v := range c.Params {
		data[k] = val(v)
	}
	data["target"] = val(c.Target)
	data["cell"] = val(c.ID)
	data["seed"] = seed
	data["dest"] = val(j.Dest())
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s: %w", j.File, err)
	}
	return b.String(), nil
}

// CheckSet checks --set overrides: each names one of the job's vars (a matrix
// parameter is chosen with --cell, the lab's own variables are not set by hand).
func (j *Job) CheckSet(set map[string]string) error {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var vars []string
	for k := range j.Vars {
		vars = append(vars, k)
	}
	sort.Strings(vars)
	known := strings.Join(vars, ", ")
	if known == "" {
		known = "none"
	}
	for _, k := range keys {
		switch _, isVar := j.Vars[k]; {
		case isVar:
		case j.Matrix[k] != nil:
			return fmt.Errorf("--set %s: %s is a matrix parameter of %s; choose its cells with --cell", k, k, j.File)
		case reservedVar[k]:
			return fmt.Errorf("--set %s: %s is set by the lab", k, k)
		default:
			return fmt.Errorf("--set %s: %s has no var %q (its vars: %s)", k, j.File, k, known)
		}
	}
	return nil
}
