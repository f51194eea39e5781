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
