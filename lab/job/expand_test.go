package job

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

// A value from --set (or a var, or a matrix value) reaches the machine's shell as one
// word: on a board that shell is root on real hardware.
func TestValuesAreShellQuoted(t *testing.T) {
	j, err := Parse("q.yaml", []byte(`name: q
targets: [x86_64]
vars: {fuzz: 15s, mode: a}
stress:
  - run: "printf '[%s]\n' {{.fuzz}} {{.dest}}{{if eq .mode \"a\"}} is-a{{end}}"
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(t.TempDir(), "owned")
	c := j.Cells()[0]
	for _, evil := range []string{"1s; touch " + owned + " #", "$(touch " + owned + ")", "`touch " + owned + "`", "x' ; touch " + owned + " '", "a\nb", "*"} {
		cmd, err := j.Expand(j.Stress[0].Run, c, 1, map[string]string{"fuzz": evil})
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", cmd).Output()
		if _, serr := os.Stat(owned); serr == nil {
			t.Fatalf("--set fuzz=%q ran a command: %s", evil, cmd)
		}
		if want := "[" + evil + "]\n[/root]\n[is-a]\n"; err != nil || string(out) != want {
			t.Errorf("--set fuzz=%q: %s gave %q (%v), want %q", evil, cmd, out, err, want)
		}
	}
}

func TestRawAndPaths(t *testing.T) {
	j, err := Parse("q.yaml", []byte("name: q\ntargets: [x86_64]\nvars: {flags: -a -b}\nstress: [{run: 'tool {{raw .flags}} {{.flags}}'}]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := j.Cells()[0]
	if got, _ := j.Expand(j.Stress[0].Run, c, 1, nil); got != "tool -a -b '-a -b'" {
		t.Errorf("raw: %q", got)
	}
	if got, _ := j.ExpandPath("{{.dest}}/{{.fuzz}} x.json", c, 1, map[string]string{"fuzz": "a b"}); got != "/root/a b x.json" {
		t.Errorf("a path is not quoted: %q", got)
	}
}

// oldExpand is Expand as it was before values were quoted: the values as written.
func oldExpand(t *testing.T, j *Job, text string, c Cell, seed int64) string {
	tm, err := template.New("step").Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"target": c.Target, "cell": c.ID, "seed": seed, "dest": j.Dest()}
	for k, v := range j.Vars {
		data[k] = v
	}
	for k, v := range c.Params {
		data[k] = v
	}
	var b strings.Builder
	if err := tm.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Every bundled job and example renders exactly the commands it rendered before
// quoting: their values need none.
func TestBundledJobsRenderAsBefore(t *testing.T) {
	files, _ := filepath.Glob("../../jobs/*.yaml")
	more, _ := filepath.Glob("../../examples/*/job.yaml")
	files = append(files, more...)
	if len(files) < 4 {
		t.Fatalf("bundled jobs: %v", files)
	}
	n := 0
	for _, f := range files {
		j, err := Load(f, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range j.Cells() {
			for _, s := range append(append(append([]Step{}, j.Setup...), j.Stress...), j.Teardown...) {
				for _, text := range []string{s.Run, s.Ready} {
					got, err := j.Expand(text, c, 12345, nil)
					if want := oldExpand(t, j, text, c, 12345); err != nil || got != want {
						t.Errorf("%s %s: %q (%v), before %q", f, c.ID, got, err, want)
					}
					n++
				}
				if got, _ := j.ExpandPath(s.Report, c, 7, nil); got != oldExpand(t, j, s.Report, c, 7) {
					t.Errorf("%s %s: report %q", f, c.ID, got)
				}
			}
		}
	}
	t.Logf("%d commands of %d jobs render as before", n, len(files))
}

func TestCheckSet(t *testing.T) {
	j, err := Parse("s.yaml", []byte("name: s\ntargets: [x86_64]\nmatrix: {mode: [a]}\nvars: {stress: 5s}\nstress: [{run: 'echo {{.stress}}'}]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.CheckSet(map[string]string{"stress": "1s,2s"}); err != nil {
		t.Error(err)
	}
	for set, want := range map[string]string{"strss": `s.yaml has no var "strss" (its vars: stress)`, "mode": "mode is a matrix parameter", "seed": "seed is set by the lab"} {
		if err := j.CheckSet(map[string]string{set: "x"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want %q", set, err, want)
		}
	}
}
