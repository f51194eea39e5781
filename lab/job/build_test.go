package job

import (
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

func TestBuildFailsExpectation(t *testing.T) {
	text := `name: rd
targets: [armv7-lpae, x86_64, armv7-lpae@trixie]
build: {strict: true}
stress: [{run: "true"}]
expect: {cells: {"*@trixie": build-fails}}
`
	j, err := Parse("rd.yaml", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Build.Strict {
		t.Error("build.strict not read")
	}
	for _, c := range j.Cells() {
		want := verdict.ExpectClean
		if c.Target == "armv7-lpae@trixie" {
			want = verdict.ExpectBuildFails
		}
		if c.Expect != want {
			t.Errorf("%s expects %s, want %s", c.ID, c.Expect, want)
		}
	}
	// Targets outside the job (a sweep's) get the same patterns.
	for target, want := range map[string]verdict.Expectation{"x86_64@trixie": verdict.ExpectBuildFails, "x86_64": "", "i386-pae": "", "armv7-lpae@trixie": verdict.ExpectBuildFails} {
		if got := j.BuildExpect(target); got != want {
			t.Errorf("BuildExpect(%s) = %q, want %q", target, got, want)
		}
	}
	// With a matrix, a pattern for some of a target's cells is enough.
	m, err := Parse("m.yaml", []byte(`name: m
targets: [x86_64, x86_64@trixie]
matrix: {mode: [a, b]}
stress: [{run: "true"}]
expect: {cells: {"x86_64@trixie/a": build-fails}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.BuildExpect("x86_64@trixie") != verdict.ExpectBuildFails || m.BuildExpect("x86_64") != "" {
		t.Error("matrix cells")
	}
}
