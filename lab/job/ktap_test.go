package job

import (
	"strings"
	"testing"
)

func TestKTAPSteps(t *testing.T) {
	base := "name: k\ntargets: [x86_64]\nstress:\n"
	j, err := Parse("k.yaml", []byte(base+"  - {name: kunit, kunit: kunit_example}\n  - {name: self, run: ./selftest, ktap: true}\n"), known)
	if err != nil {
		t.Fatal(err)
	}
	if j.Stress[0].TestsKind() != "kunit" || j.Stress[1].TestsKind() != "ktap" || (Step{Run: "x"}).TestsKind() != "" {
		t.Errorf("kinds %q %q", j.Stress[0].TestsKind(), j.Stress[1].TestsKind())
	}
	cmd, err := j.Expand(j.Stress[0].Command(), j.Cells()[0], 1, nil)
	if err != nil || !strings.Contains(cmd, "insmod /root/kunit_example.ko") || !strings.HasPrefix(cmd, "rmmod kunit_example") {
		t.Errorf("default kunit command %q %v", cmd, err)
	}
	if c := (Step{KUnit: "m", Run: "insmod x.ko fail=1"}).Command(); c != "insmod x.ko fail=1" {
		t.Errorf("a kunit step's own run: %q", c)
	}
	for _, tc := range []struct{ step, want string }{
		{"{kunit: m, ktap: true}", "k.yaml:4: stress[0].ktap: a kunit step reads the kernel log"},
		{"{kunit: 'a b'}", "k.yaml:4: stress[0].kunit:"},
		{"{run: x, suites: [s]}", "k.yaml:4: stress[0].suites: only a kunit step"},
		{"{kunit: m, suites: ['a/b']}", `stress[0].suites: "a/b" is no KUnit suite name`},
		{"{run: x, ktap: true, background: true}", "stress[0].background: a KTAP step is waited for"},
	} {
		_, err := Parse("k.yaml", []byte(base+"  - "+tc.step+"\n"), known)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.step, err, tc.want)
		}
	}
}
