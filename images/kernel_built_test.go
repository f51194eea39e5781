package images

import (
	"os/exec"
	"strings"
	"testing"
)

func TestBuiltLineNames(t *testing.T) {
	for _, tc := range []struct {
		ref, name, err string
		frags          []string
	}{
		{ref: "armv7-lpae@trixie+detect", name: "armv7-lpae@trixie+detect", frags: []string{"detect"}},
		{ref: "x86_64+debug", name: "x86_64+debug", frags: []string{"debug"}},
		{ref: "armv7-lpae@sid+debug+detect", name: "armv7-lpae@sid+debug+detect", frags: []string{"debug", "detect"}},
		{ref: "armv7-lpae@trixie", name: "armv7-lpae@trixie"},
		{ref: "armv7-lpae+detect+debug", err: `name fragments once each, in sorted order (debug+detect)`},
		{ref: "armv7-lpae+detect+detect", err: `in sorted order (detect)`},
		{ref: "armv7-lpae+fast", err: `no kernel config fragment "fast" (known: debug, detect, kunit, lean)`},
		{ref: "armv7-lpae@trixie+detect+lean", name: "armv7-lpae@trixie+detect+lean", frags: []string{"detect", "lean"}},
		{ref: "x86_64@trixie+lean", err: `no lean base for ARCH=x86`},
		{ref: "armv7-lpae+lab", err: `no kernel config fragment "lab"`},
		{ref: "armv7-lpae+", err: `no kernel config fragment ""`},
		{ref: "nosuch+detect", err: `unknown target "nosuch"`},
		{ref: "armv7-lpae@nosuch+detect", err: `no kernel line "nosuch"`},
	} {
		tg, err := Lookup(tc.ref)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.ref, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if tg.Name != tc.name || strings.Join(tg.Fragments, ",") != strings.Join(tc.frags, ",") {
			t.Errorf("%s: name %q fragments %v", tc.ref, tg.Name, tg.Fragments)
		}
		_, isBuilt := tg.source().(builtKernel)
		if isBuilt != (len(tc.frags) > 0) {
			t.Errorf("%s: built source %v", tc.ref, isBuilt)
		}
	}
	// The Debian line a build starts from keeps the line and drops the fragments.
	tg, _ := Lookup("armv7-lpae@trixie+detect")
	if d := debianLine(tg); d.Name != "armv7-lpae@trixie" || d.Suite != "trixie" || len(d.Fragments) != 0 {
		t.Errorf("debian line %+v", d)
	}
	if tg.Suite != "trixie" || tg.Kernel.Version == "" {
		t.Errorf("a built line keeps its Debian kernel until resolved: %+v", tg.Kernel)
	}
}

func TestFragments(t *testing.T) {
	d, err := Fragment("detect")
	if err != nil || !strings.Contains(string(d), "# CONFIG_ARM_PAN is not set") {
		t.Errorf("detect must drop ARM_PAN (CPU_TTBR0_PAN follows it): %v", err)
	}
	g, err := Fragment("debug")
	for _, want := range []string{"CONFIG_DEBUG_ATOMIC_SLEEP=y", "CONFIG_PROVE_LOCKING=y", "CONFIG_KASAN=y", "CONFIG_KFENCE=y", "CONFIG_DEBUG_LIST=y"} {
		if err != nil || !strings.Contains(string(g), want) {
			t.Errorf("debug lacks %s (%v)", want, err)
		}
	}
	l, err := Fragment(labFragment)
	if err != nil || !strings.Contains(string(l), "# CONFIG_DEBUG_INFO_BTF is not set") {
		t.Errorf("lab fragment: %v", err)
	}
}

func TestSourcePackage(t *testing.T) {
	for v, want := range map[string]string{"6.12.107-1": "linux-source-6.12", "6.1.176-1": "linux-source-6.1",
		"7.2.13-1": "linux-source-7.2", "6.5~rc4-1~exp1": "linux-source-6.5", "7.2": "linux-source-7.2"} {
		if got, err := sourcePackage(v); err != nil || got != want {
			t.Errorf("%s: %s %v, want %s", v, got, err, want)
		}
	}
	if _, err := sourcePackage("seven"); err == nil {
		t.Error("no version")
	}
}

// The cache key follows every input: the same inputs give the same key, any change
// another.
func TestBuiltKernelKey(t *testing.T) {
	if _, err := exec.LookPath("arm-linux-gnueabihf-gcc"); err != nil {
		t.Skip("no ARM cross compiler (scripts/setup-host.sh installs it)")
	}
	tg := lookup(t, "armv7-lpae@trixie+detect")
	key := func(tg *Target, base, pkg, ver string, job ...JobFragment) string {
		in, err := buildInputs(tg, []byte(base), pkg, ver, job)
		if err != nil {
			t.Fatal(err)
		}
		return in.key
	}
	k0 := key(tg, "CONFIG_A=y\n", "linux-source-6.12", "6.12.118-1")
	if k := key(tg, "CONFIG_A=y\n", "linux-source-6.12", "6.12.118-1"); k != k0 {
		t.Errorf("same inputs, two keys")
	}
	debug, _ := Lookup("armv7-lpae@trixie+debug+detect")
	leanTg, _ := Lookup("armv7-lpae@trixie+detect+lean")
	mods := *tg
	mods.Modules = append([]string{"virtio_scsi"}, tg.Modules...)
	for what, k := range map[string]string{
		"base config": key(tg, "CONFIG_A=m\n", "linux-source-6.12", "6.12.118-1"),
		"version":     key(tg, "CONFIG_A=y\n", "linux-source-6.12", "6.12.119-1"),
		"fragments":   key(debug, "CONFIG_A=y\n", "linux-source-6.12", "6.12.118-1"),
		"modules":     key(&mods, "CONFIG_A=y\n", "linux-source-6.12", "6.12.118-1"),
		"job fragment": key(tg, "CONFIG_A=y\n", "linux-source-6.12", "6.12.118-1",
			JobFragment{Name: "mine.config", Data: []byte("CONFIG_KCSAN=y\n")}),
		"lean base": key(leanTg, "CONFIG_A=y\n", "linux-source-6.12", "6.12.118-1"),
	} {
		if k == k0 {
			t.Errorf("a change of %s kept the key", what)
		}
	}
	in, _ := buildInputs(tg, nil, "p", "v", []JobFragment{{Name: "mine.config", Data: []byte("CONFIG_X=y\n")}})
	if got := strings.Join(in.order, " "); got != "lab detect job-mine.config" {
		t.Errorf("merge order %q, want the lab's, the target's, then the job's", got)
	}
	if !strings.Contains(string(in.lsmod), "\nvirtio_blk 1 0\n") || !strings.Contains(string(in.lsmod), "\nloop 1 0\n") {
		t.Errorf("lsmod keeps the recipe's modules and loop:\n%s", in.lsmod)
	}
	// +lean is the base, not a fragment: it is not merged, and brings its config step.
	if li, err := buildInputs(leanTg, nil, "p", "v", nil); err != nil {
		t.Errorf("lean line: %v", err)
	} else if !li.lean || len(li.leanScript) == 0 || strings.Join(li.order, " ") != "lab detect" {
		t.Errorf("lean line: order %q lean %v", li.order, li.lean)
	}
	// The keys of lines that are not lean do not depend on the lean step.
	if in.lean || in.leanScript != nil {
		t.Errorf("a Debian-based line took the lean base")
	}
	if !strings.HasPrefix(in.compiler, "arm-linux-gnueabihf-gcc") {
		t.Errorf("compiler %q", in.compiler)
	}
}

func TestKernelFormats(t *testing.T) {
	arm, _ := Lookup("armv7-lpae")
	x86, _ := Lookup("x86_64")
	if f, err := arm.format(); err != nil || f.file != "Image" || !f.stub {
		t.Errorf("armv7-lpae: %+v %v", f, err)
	}
	if f, err := x86.format(); err != nil || f.file != "vmlinux" || f.stub {
		t.Errorf("x86_64: %+v %v", f, err)
	}
	if got := strings.Join(arm.KernelArgs("/i/Image", "/i/boot-stub.bin"), " "); got != "-kernel /i/boot-stub.bin -device loader,file=/i/Image,addr=0x40208000,force-raw=on" {
		t.Errorf("arm-image args: %s", got)
	}
	if got := strings.Join(x86.KernelArgs("/i/vmlinux", ""), " "); got != "-kernel /i/vmlinux" {
		t.Errorf("vmlinux args: %s", got)
	}
	bad := *x86
	bad.QEMU.KernelFormat = "uimage"
	if _, err := bad.format(); err == nil || !strings.Contains(err.Error(), `qemu.kernel_format "uimage"`) {
		t.Errorf("unknown format: %v", err)
	}
}
