package job

import (
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// jobs/kernels.yaml's expectations hold for lines given with --target too: every
// +detect build reproduces atomic, the stock 6.12 and 7.x lines cannot detect, and kmap
// stays clean on a built line.
func TestKernelsJobExpectations(t *testing.T) {
	j, err := Load("../../jobs/kernels.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]verdict.Expectation{
		"armv7-lpae/atomic":                          verdict.ExpectReproduces,
		"armv7-lpae/kmap":                            verdict.ExpectClean,
		"armv7-lpae@trixie/atomic":                   verdict.ExpectCannotDetect,
		"armv7-lpae@sid/kmap":                        verdict.ExpectCannotDetect,
		"armv7-lpae@trixie+detect/atomic":            verdict.ExpectReproduces,
		"armv7-lpae@trixie+detect+lean/atomic":       verdict.ExpectReproduces,
		"armv7-lpae@trixie+debug+detect+lean/atomic": verdict.ExpectReproduces,
		"armv7-lpae@sid+detect/atomic":               verdict.ExpectReproduces,
		"armv7-lpae@trixie+detect+lean/kmap":         verdict.ExpectClean,
		"arm64@trixie/atomic":                        verdict.ExpectClean,
	} {
		if got := j.expectFor(id); got != want {
			t.Errorf("%s: expect %q, want %q", id, got, want)
		}
	}
}
