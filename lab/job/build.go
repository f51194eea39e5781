package job

import "github.com/kmodlab/kmodlab/lab/verdict"

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
