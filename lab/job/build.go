package job

import (
	"fmt"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// BuildExpect is what the job expects of a target's build: BuildFails when a cell
// pattern says build-fails for one of that target's cells, else "" (it builds). The
// target need not be one of the job's (a compile-only sweep builds for others too).
func (j *Job) BuildExpect(target string) verdict.Expectation {
	c := *j
	c.Targets = []string{target}
	for _, cell := range c.Cells() {
		if cell.Expect == verdict.ExpectBuildFails {
			return verdict.ExpectBuildFails
		}
	}
	return ""
}

// Retarget runs the job's cells on other targets instead of its own (kmodlab run
// --target): each must be known, and given once. The job's cell patterns (expect)
// still apply by their globs.
func (j *Job) Retarget(targets []string, known func(string) bool) error {
	seen := map[string]bool{}
	for _, t := range targets {
		switch {
		case checkValue(t) != "":
			return fmt.Errorf("--target %q: %s", t, checkValue(t))
		case seen[t]:
			return fmt.Errorf("--target %s given twice", t)
		case known != nil && !known(t):
			return fmt.Errorf("--target %s: unknown target or board", t)
		}
		seen[t] = true
	}
	if len(targets) > 0 {
		j.Targets = append([]string(nil), targets...)
	}
	return nil
}
