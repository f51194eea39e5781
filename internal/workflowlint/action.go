// Package workflowlint checks the repository's GitHub workflow and composite action with
// actionlint, so a broken workflow fails `make test` before it reaches GitHub. Action
// is action.yml as those checks, and the e2e test that runs its steps, read it.
package workflowlint

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// Action is what the tests read of a composite action's action.yml.
type Action struct {
	Inputs map[string]Input `yaml:"inputs"`
	Runs   struct {
		Using string `yaml:"using"`
		Steps []Step `yaml:"steps"`
	} `yaml:"runs"`
}

// Input is one of an action's inputs.
type Input struct {
	Default string `yaml:"default"`
}

// Step is one of a composite action's steps: a run: script in a shell, or a uses: of
// another action.
type Step struct {
	Name  string            `yaml:"name"`
	ID    string            `yaml:"id"`
	If    string            `yaml:"if"`
	Run   string            `yaml:"run"`
	Shell string            `yaml:"shell"`
	Uses  string            `yaml:"uses"`
	Env   map[string]string `yaml:"env"`
}

// ReadAction reads the composite action of the repository at root, its action.yml.
func ReadAction(root string) (*Action, error) {
	f, err := os.Open(filepath.Join(root, "action.yml"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var a Action
	if err := yaml.NewDecoder(f).Decode(&a); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return &a, nil
}
