package job

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKernelFragments(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kcsan.config", "# mine\nCONFIG_KCSAN=y\n# CONFIG_KCSAN_STRICT is not set\n")
	write("bad.config", "CONFIG_A=y\nmake menuconfig\n")
	write("empty.config", "# nothing\n")
	file := filepath.Join(dir, "f.yaml")
	src := "name: f\ntargets: [x86_64@trixie+debug, x86_64]\nkernel_fragments:\n  - kcsan.config\nstress: [{run: 'true'}]\n"
	j, err := Parse(file, []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	frags, err := j.Fragments()
	if err != nil || len(frags) != 1 || frags[0].Name != "kcsan.config" || !strings.Contains(string(frags[0].Data), "CONFIG_KCSAN=y") {
		t.Errorf("fragments %v, %v", frags, err)
	}
	for _, c := range []struct{ from, to, want string }{
		{"x86_64@trixie+debug, ", "", "f.yaml:3: kernel_fragments: no built line"},
		{"kcsan.config", "missing.config", "f.yaml:4: kernel_fragments[0]: open "},
		{"kcsan.config", "bad.config", `f.yaml:4: kernel_fragments[0]: bad.config: line 2: "make menuconfig" is not CONFIG_NAME=value`},
		{"kcsan.config", "empty.config", "f.yaml:4: kernel_fragments[0]: empty.config: no CONFIG_ line"},
		{"- kcsan.config", "- kcsan.config\n  - sub/kcsan.config", "f.yaml:5: kernel_fragments[1]: a second fragment named kcsan.config"},
	} {
		_, err := Parse(file, []byte(strings.Replace(src, c.from, c.to, 1)), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

func TestRetarget(t *testing.T) {
	j, err := Parse("r.yaml", []byte("name: r\ntargets: [x86_64]\nmatrix: {m: [a, b]}\nstress: [{run: 'true'}]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	known := func(s string) bool { return s == "x86_64@trixie+debug" || s == "i386-pae" }
	for _, c := range []struct {
		targets []string
		want    string
	}{
		{[]string{"nope"}, "--target nope: unknown target or board"},
		{[]string{"i386-pae", "i386-pae"}, "--target i386-pae given twice"},
		{[]string{"x86_64@trixie+debug\n--out"}, "--target"},
	} {
		if err := j.Retarget(c.targets, known); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.targets, err, c.want)
		}
	}
	if err := j.Retarget([]string{"x86_64@trixie+debug", "i386-pae"}, known); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range j.Cells() {
		ids = append(ids, c.ID)
	}
	if got := strings.Join(ids, " "); got != "x86_64@trixie+debug/a x86_64@trixie+debug/b i386-pae/a i386-pae/b" {
		t.Errorf("cells %s", got)
	}
}
