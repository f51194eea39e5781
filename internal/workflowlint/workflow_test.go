package workflowlint

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// workflows is the repository's workflow files.
func workflows(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../../.github/workflows/*.yml")
	if len(files) == 0 {
		t.Fatal("no workflow found")
	}
	return files
}

func TestWorkflowsLint(t *testing.T) {
	files := workflows(t)
	var out bytes.Buffer
	opts := &actionlint.LinterOptions{ConfigFile: "../../.github/actionlint.yaml"}
	// With shellcheck installed, the run: scripts are checked too.
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else {
		t.Log("shellcheck not installed: run: scripts are not shellchecked")
	}
	l, err := actionlint.NewLinter(&out, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s [%s]", e.Filepath, e.Line, e.Column, e.Message, e.Kind)
	}
}

func TestWorkflowLintCatchesMistakes(t *testing.T) {
	// The check itself must be able to fail.
	bad := []byte("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }\n")
	var out bytes.Buffer
	l, _ := actionlint.NewLinter(&out, &actionlint.LinterOptions{})
	errs, err := l.Lint("bad.yml", bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) == 0 {
		t.Fatal("actionlint found nothing wrong in a broken workflow")
	}
}

// TestCompositeAction: actionlint lints workflows, not action.yml; check the action's
// shape: inputs the README promises and steps that say their shell.
func TestCompositeAction(t *testing.T) {
	a, err := ReadAction("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"job", "targets", "cells", "mode", "shard", "plan", "apt-sources"} {
		if _, ok := a.Inputs[in]; !ok {
			t.Errorf("action.yml lacks input %q", in)
		}
	}
	if a.Runs.Using != "composite" {
		t.Errorf("runs.using = %q", a.Runs.Using)
	}
	for i, s := range a.Runs.Steps {
		if s.Run != "" && s.Shell == "" {
			t.Errorf("step %d runs a command without shell:", i)
		}
		if s.Run == "" && s.Uses == "" {
			t.Errorf("step %d does nothing", i)
		}
		if strings.Contains(s.Run, "${{ inputs.") {
			t.Errorf("step %d interpolates an input into a script (pass it through env)", i)
		}
	}
}

// TestOneGoVersion: go.mod's go line is the one place the Go version is named. The
// workflow and the action hand go.mod to actions/setup-go, and the README names the same
// version wherever it names one.
func TestOneGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := string(m[1])
	files := append(workflows(t), "../../action.yml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if strings.Contains(text, "go-version:") {
			t.Errorf("%s: names a Go version (go-version:); use go-version-file: go.mod", f)
		}
		if n, g := strings.Count(text, "actions/setup-go@"), strings.Count(text, "go-version-file:"); n == 0 || n != g {
			t.Errorf("%s: %d setup-go steps, %d with go-version-file", f, n, g)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range regexp.MustCompile(`\bGo (1\.\d+(?:\.\d+)?)`).FindAllStringSubmatch(string(readme), -1) {
		if v[1] != want {
			t.Errorf("README.md names Go %s; go.mod says %s", v[1], want)
		}
	}
	script, _ := os.ReadFile("../../scripts/setup-host.sh")
	if !strings.Contains(string(script), "go.mod") || regexp.MustCompile(`-lt 2\d`).Match(script) {
		t.Error("scripts/setup-host.sh must take the Go version from go.mod")
	}
}

// TestScriptsExistAndShellcheck: every scripts/… file the workflow and the action call
// exists and is executable, and (with shellcheck installed) every script is clean.
func TestScriptsExistAndShellcheck(t *testing.T) {
	files := append(workflows(t), "../../action.yml")
	re := regexp.MustCompile(`scripts/[A-Za-z0-9_.-]+\.sh`)
	n := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, s := range re.FindAllString(string(data), -1) {
			n++
			st, err := os.Stat(filepath.Join("../..", s))
			if err != nil || st.Mode()&0o111 == 0 {
				t.Errorf("%s calls %s: missing or not executable (%v)", f, s, err)
			}
		}
	}
	if n == 0 {
		t.Error("the workflow and the action call no script")
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	scripts, _ := filepath.Glob("../../scripts/*.sh")
	out, err := exec.Command(sc, append([]string{"-x"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}
