// Package workflowlint checks the repository's GitHub workflow and composite action with
// actionlint, so a broken workflow fails `make test` before it reaches GitHub.
package workflowlint

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"
)

func TestWorkflowsLint(t *testing.T) {
	files, _ := filepath.Glob("../../.github/workflows/*.yml")
	if len(files) == 0 {
		t.Fatal("no workflow found")
	}
	var out bytes.Buffer
	l, err := actionlint.NewLinter(&out, &actionlint.LinterOptions{ConfigFile: "../../.github/actionlint.yaml"})
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
	data, err := os.ReadFile("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Inputs map[string]struct {
			Required bool `yaml:"required"`
		} `yaml:"inputs"`
		Runs struct {
			Using string `yaml:"using"`
			Steps []struct {
				Run   string `yaml:"run"`
				Uses  string `yaml:"uses"`
				Shell string `yaml:"shell"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	if err := yaml.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"job", "targets", "cells"} {
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
