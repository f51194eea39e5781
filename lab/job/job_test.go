package job

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

func known(t string) bool {
	return t == "armv7-lpae" || t == "arm64" || t == "i386-pae" || t == "x86_64"
}

func TestDefaultJob(t *testing.T) {
	j, err := Load("../../jobs/highmem-coherency.yaml", known)
	if err != nil {
		t.Fatal(err)
	}
	cells := j.Cells()
	if len(cells) != 16 {
		t.Fatalf("%d cells, want 16", len(cells))
	}
	want := map[string]verdict.Expectation{"armv7-lpae/atomic": verdict.ExpectReproduces, "i386-pae/local": verdict.ExpectReproduces, "x86_64/atomic": verdict.ExpectClean, "armv7-lpae/kmap": verdict.ExpectClean,
		"arm64/atomic": verdict.ExpectClean, "arm64/local": verdict.ExpectClean}
	for _, c := range cells {
		if w, ok := want[c.ID]; ok && c.Expect != w {
			t.Errorf("%s expects %s, want %s", c.ID, c.Expect, w)
		}
	}
	sel, err := Select(cells, []string{"armv7-lpae/atomic"})
	if err != nil || len(sel) != 1 {
		t.Fatalf("select: %v %v", sel, err)
	}
	if sel, _ := Select(cells, []string{"i386-pae"}); len(sel) != 4 {
		t.Errorf("selecting a target gives %d cells", len(sel))
	}
	if _, err := Select(cells, []string{"nope/atomic"}); err == nil || !strings.Contains(err.Error(), "armv7-lpae/atomic") {
		t.Errorf("bad selection error: %v", err)
	}
	cmd, err := j.Expand(j.Setup[0].Run, sel[0], 42, map[string]string{"trace": "4"})
	if err != nil || cmd != "insmod /root/userblk.ko unsafe_modes=1 map_mode=atomic trace=4" {
		t.Errorf("expand: %q %v", cmd, err)
	}
	if !strings.HasSuffix(j.RootDir(), "main") && filepath.Base(j.Path("kmod")) != "kmod" {
		t.Errorf("root %s", j.RootDir())
	}
}

func TestErrorsNameFileLineField(t *testing.T) {
	base := `name: t
targets: [x86_64]
matrix:
  mode: [a, b]
stress:
  - run: echo {{.mode}}
`
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown field", base + "stresss: []\n", "bad.yaml:7: field stresss not found"},
		{"unknown target", strings.Replace(base, "[x86_64]", "[x86_64, pi5]", 1), "bad.yaml:2: targets[1]: unknown target or board \"pi5\""},
		{"empty run", base + "setup:\n  - name: x\n", "bad.yaml:8: setup[0].run: missing"},
		{"bad expectation", base + "expect:\n  default: maybe\n", "bad.yaml:8: expect.default: \"maybe\""},
		{"pattern matches nothing", base + "expect:\n  cells:\n    arm/*: reproduces\n", "bad.yaml:9: expect.cells.arm/*: matches no cell"},
		{"bad template", strings.Replace(base, "{{.mode}}", "{{.mode", 1), "bad.yaml:6: stress[0].run"},
		{"bad duration", base + "timeouts:\n  stress: soon\n", "bad.yaml:8: \"soon\" is not a duration"},
		{"ready without background", base + "setup:\n  - run: x\n    ready: y\n", "bad.yaml:9: setup[0].ready"},
		{"no stress", "name: t\ntargets: [x86_64]\n", "bad.yaml:1: stress: at least one"},
		{"empty", "", "bad.yaml:1: empty job file"},
	} {
		_, err := Parse("bad.yaml", []byte(tc.text), known)
		var je *Error
		if err == nil || !errors.As(err, &je) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestMatrixExpansionAndSpecificity(t *testing.T) {
	j, err := Parse("m.yaml", []byte(`name: m
targets: [a, b]
matrix:
  x: ["1", "2"]
  y: [p, q]
stress: [{run: "true"}]
expect:
  default: clean
  cells:
    "*/1/*": reproduces
    "b/1/q": clean
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	cells := j.Cells()
	if len(cells) != 8 || cells[0].ID != "a/1/p" || cells[7].ID != "b/2/q" {
		t.Fatalf("cells: %+v", cells)
	}
	for _, c := range cells {
		want := verdict.ExpectClean
		if c.Params["x"] == "1" && c.ID != "b/1/q" {
			want = verdict.ExpectReproduces
		}
		if c.Expect != want {
			t.Errorf("%s expects %s, want %s", c.ID, c.Expect, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../../jobs/highmem-coherency.yaml")
	f.Add(string(data))
	f.Add("name: x\ntargets: [a]\nstress: [{run: x}]\nmatrix: {k: [v]}\n")
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Parse("f.yaml", []byte(s), nil)
		if err != nil {
			var je *Error
			if !errors.As(err, &je) || je.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range j.Cells() {
			if c.Expect != verdict.ExpectClean && c.Expect != verdict.ExpectReproduces && c.Expect != verdict.ExpectCrashes {
				t.Fatalf("cell %s expects %q", c.ID, c.Expect)
			}
			if seen[c.ID] {
				t.Fatalf("two cells are %s", c.ID)
			}
			seen[c.ID] = true
			if strings.ContainsAny(c.ID, "\n\r\x00,*?[ ") || strings.Contains(c.ID, "..") {
				t.Fatalf("cell ID %q", c.ID)
			}
			for _, s := range append(append(append([]Step{}, j.Setup...), j.Stress...), j.Teardown...) {
				j.Expand(s.Run, c, 1, nil) // an error is fine, a panic is not
			}
		}
		if !share(j.Expect.MinRate) || !finite(j.Expect.Factor()) {
			t.Fatalf("expect %+v", j.Expect)
		}
	})
}

func TestExpectFields(t *testing.T) {
	base := "name: x\ntargets: [x86_64]\nstress: [{run: 'true', report: /r.json}, {run: 'true'}]\n"
	j, err := Parse("j.yaml", []byte(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Expect.Evidence(); got != (verdict.MinEvidence{IO: 100}) {
		t.Errorf("default min_evidence %+v", got)
	}
	if got := j.Expect.Factor(); got != DefaultEvidenceFactor {
		t.Errorf("default evidence_factor %v", got)
	}
	if j.Stress[0].FailurePolicy() != "evidence" || j.Stress[1].FailurePolicy() != "infra" {
		t.Errorf("policies %q %q", j.Stress[0].FailurePolicy(), j.Stress[1].FailurePolicy())
	}
	j, err = Parse("j.yaml", []byte(base+"expect: {default: crashes, min_rate: 0.9, min_evidence: {transactions: 5, io: 0, ops: 7}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if j.Expect.Evidence() != (verdict.MinEvidence{Transactions: 5, Ops: 7}) || j.Expect.MinRate != 0.9 || j.Cells()[0].Expect != verdict.ExpectCrashes {
		t.Errorf("%+v", j.Expect)
	}
	for text, want := range map[string]float64{"evidence_factor: 0": 0, "evidence_factor: 1.5": 1.5} {
		j, err = Parse("j.yaml", []byte(base+"expect: {"+text+"}\n"), nil)
		if err != nil || j.Expect.Factor() != want {
			t.Errorf("%s: factor %v, %v", text, j.Expect.Factor(), err)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{"expect: {min_rate: 1.5}\n", "j.yaml:4: expect.min_rate: 1.5: want a share between 0 and 1"},
		{"expect: {min_evidence: {io: -1}}\n", "j.yaml:4: expect.min_evidence: counts cannot be negative"},
		{"expect: {evidence_factor: -1}\n", "j.yaml:4: expect.evidence_factor: -1: want 0 (run stress to its cap) or a factor up to 1000"},
		{"expect: {default: maybe}\n", `expect.default: "maybe": want "reproduces", "crashes", "clean", "cannot-detect" or "build-fails"`},
	} {
		_, err := Parse("j.yaml", []byte(base+tc.text), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
	_, err = Parse("j.yaml", []byte("name: x\ntargets: [x86_64]\nstress: [{run: 'true', on_failure: ignore}]\n"), nil)
	if err == nil || !strings.Contains(err.Error(), `stress[0].on_failure: "ignore": want infra or evidence`) {
		t.Errorf("on_failure: %v", err)
	}
}

// Hostile job files: every value that reaches a file name, a cell ID, a plan's argument
// list or a number the lab computes with is checked, with file:line: field: problem.
func TestHostileValuesRejected(t *testing.T) {
	base := "name: t\ntargets: [x86_64]\nmatrix:\n  mode: [a, b]\nstress:\n  - run: echo {{.mode}}\n"
	for _, tc := range []struct{ name, text, want string }{
		{"newline in a matrix value", strings.Replace(base, "[a, b]", "[a, \"b\\n--out /elsewhere\"]", 1), `bad.yaml:4: matrix.mode[1]: "b\n--out /elsewhere": only letters`},
		{"slash in a matrix value", strings.Replace(base, "[a, b]", "[a, b/c]", 1), `bad.yaml:4: matrix.mode[1]: "b/c"`},
		{"glob in a matrix value", strings.Replace(base, "[a, b]", "[a, \"b*\"]", 1), `matrix.mode[1]: "b*"`},
		{"comma in a matrix value", strings.Replace(base, "[a, b]", "[a, \"b,c\"]", 1), `matrix.mode[1]: "b,c"`},
		{"dot-dot matrix value", strings.Replace(base, "[a, b]", "[a, ..]", 1), `matrix.mode[1]: ".."`},
		{"duplicate matrix value", strings.Replace(base, "[a, b]", "[a, b, a]", 1), `bad.yaml:4: matrix.mode[2]: "a" is listed twice`},
		{"duplicate target", strings.Replace(base, "[x86_64]", "[x86_64, i386-pae, x86_64]", 1), `bad.yaml:2: targets[2]: "x86_64" is listed twice`},
		{"matrix key the lab sets", strings.Replace(base, "mode:", "seed:", 1), `bad.yaml:4: matrix.seed: "seed" is one of the lab's own`},
		{"step name with a path", base + "setup:\n  - name: ../../x\n    run: x\n", `bad.yaml:8: setup[0].name: "../../x"`},
		{"step name of the lab", base + "setup:\n  - name: kmodlab-kmsg\n    run: x\n", `setup[0].name: "kmodlab-kmsg": names starting with kmodlab`},
		{"duplicate step names", base + "setup:\n  - {name: a, run: x}\n  - {name: a, run: y}\n", `bad.yaml:9: setup[1].name: "a": two setup steps`},
		{"background log takes kern.log", base + "setup:\n  - {name: kern, run: x, background: true}\n", `setup[0].name: "kern": its log kern.log is collected`},
		{"binary name with a path", base + "build:\n  binaries:\n    - {name: ../../x, package: ./cmd/x}\n", `bad.yaml:9: build.binaries[0].name: "../../x"`},
		{"duplicate binary", base + "build:\n  binaries:\n    - {name: x, package: ./a}\n    - {name: x, package: ./b}\n", `build.binaries[1].name: "x" is listed twice`},
		{"module name with a path", base + "build:\n  modules:\n    - {name: a/b, dir: .}\n", `build.modules[0].name: "a/b"`},
		{"collect overwrites kern.log", base + "collect: [/var/log/kern.log]\n", `bad.yaml:7: collect[0]: "/var/log/kern.log": the lab writes kern.log`},
		{"collect overwrites a step log", base + "collect: [/tmp/stress-odirect.log]\n", `collect[0]: "/tmp/stress-odirect.log": the lab writes stress-*.log`},
		{"collect name from a template", base + "collect: [\"/tmp/{{.mode}}\"]\n", `collect[0]: "/tmp/{{.mode}}": the file's own name`},
		{"negative timeout", base + "timeouts:\n  stress: -5s\n", `bad.yaml:8: timeouts.stress: -5s: a timeout cannot be negative`},
		{"negative step timeout", strings.Replace(base, "  - run: echo {{.mode}}\n", "  - run: echo {{.mode}}\n    timeout: -1m\n", 1), `bad.yaml:7: stress[0].timeout: -1m0s`},
		{"nan min_rate", base + "expect:\n  min_rate: .nan\n", `bad.yaml:8: expect.min_rate: NaN`},
		{"nan evidence_factor", base + "expect:\n  evidence_factor: .nan\n", `bad.yaml:8: expect.evidence_factor: NaN`},
		{"inf evidence_factor", base + "expect:\n  evidence_factor: .inf\n", `expect.evidence_factor: +Inf`},
		{"bad file mode", base + "build:\n  files:\n    - {src: job_test.go, mode: rwxr-xr-x}\n", `bad.yaml:9: build.files[0].mode: "rwxr-xr-x": want an octal mode`},
		{"too big file mode", base + "build:\n  files:\n    - {src: job_test.go, mode: \"017777\"}\n", `build.files[0].mode: "017777"`},
		{"second document", base + "---\nname: other\n", `bad.yaml:7: a second YAML document`},
		{"var name the lab sets", base + "vars: {dest: /tmp}\n", `vars.dest: "dest"`},
	} {
		_, err := Parse("bad.yaml", []byte(tc.text), nil)
		var je *Error
		if err == nil || !errors.As(err, &je) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
