package build

import (
	"os"
	"strings"
	"testing"
)

func readLog(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The logs under testdata are real kbuild output (gcc 12 native and arm-linux-gnueabihf,
// Debian's 6.1 and 6.12 headers), except the clang ones and misc.log, written in the
// formats clang, gas, make and modpost print.
// workDir is the build directory a real log names.
func workDir(log string) string {
	i := strings.Index(log, "/tmp/kmodlab-kbuild-")
	j := strings.Index(log[i+len("/tmp/"):], "/")
	return log[i : i+len("/tmp/")+j]
}

func TestParseLogFirstError(t *testing.T) {
	for _, tc := range []struct {
		log, work string
		files     []string
		want      string // the first error, as the evidence shows it
		file      string // where it belongs in the module's sources
		line      int
	}{
		{"gcc-arm-6.12-rapiddisk.log", "", []string{"rapiddisk.c", "Kbuild"},
			"rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'; did you mean 'queue_logical_block_size'?", "rapiddisk.c", 815},
		{"gcc-x86-6.12-rapiddisk.log", "", []string{"rapiddisk.c"},
			"rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'; did you mean 'queue_logical_block_size'?", "rapiddisk.c", 815},
		{"clang-x86-rapiddisk.log", "/tmp/kmodlab-kbuild-77", []string{"rapiddisk.c"},
			"rapiddisk.c:815: call to undeclared function 'blk_queue_logical_block_size'; ISO C99 and later do not support implicit function declarations", "rapiddisk.c", 815},
		// clang's chain, relative paths (kbuild of 6.13 on runs in the module's directory).
		{"clang-arm-header-error.log", "/nowhere", []string{"rapiddisk.c"},
			"include/linux/genhd.h:12: 'linux/nosuch.h' file not found (included from rapiddisk.c:30)", "rapiddisk.c", 30},
		{"misc.log", "/tmp/kmodlab-kbuild-9", []string{"Kbuild"}, "Kbuild:2: missing separator", "Kbuild", 2},
	} {
		t.Run(tc.log, func(t *testing.T) {
			log := readLog(t, tc.log)
			work := tc.work
			if work == "" {
				work = workDir(log)
			}
			files := map[string]bool{}
			for _, f := range tc.files {
				files[f] = true
			}
			ds := ParseLog(log, Paths{Work: work, Files: files})
			first := FirstError(ds)
			if first == nil {
				t.Fatalf("no error in %+v", ds)
			}
			if first.String() != tc.want {
				t.Errorf("first error:\n got %q\nwant %q", first.String(), tc.want)
			}
			f, l, ok := first.SourceLine()
			if !ok || f != tc.file || l != tc.line {
				t.Errorf("source line: %s:%d %v, want %s:%d", f, l, ok, tc.file, tc.line)
			}
		})
	}
}

func TestParseLogAllErrors(t *testing.T) {
	log := readLog(t, "gcc-arm-6.12-rapiddisk.log")
	ds := ParseLog(log, Paths{Work: workDir(log), Files: map[string]bool{"rapiddisk.c": true}})
	var got []string
	for _, d := range ds {
		got = append(got, d.Place())
		if d.Severity != "error" || !d.InModule || d.Tool != "cc" {
			t.Errorf("%+v", d)
		}
	}
	// Notes ("declared here", "each undeclared identifier …") and cc1's and make's own lines are not diagnostics.
	if want := "rapiddisk.c:815 rapiddisk.c:816 rapiddisk.c:823 rapiddisk.c:839 rapiddisk.c:843"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

func TestParseLogWarnings(t *testing.T) {
	log := readLog(t, "gcc-x86-6.12-warnings.log")
	ds := ParseLog(log, Paths{Work: "/tmp/kmodlab-kbuild-425765175", Files: map[string]bool{"wmod.c": true, "local.h": true, "Kbuild": true}})
	if FirstError(ds) != nil {
		t.Errorf("a warning is not an error: %+v", FirstError(ds))
	}
	var got []string
	for _, w := range ModuleWarnings(ds) {
		got = append(got, w.String())
	}
	want := []string{"wmod.c:4: no previous prototype for 'wmod_helper'", "wmod.c:6: unused variable 'unused'",
		"modpost: missing MODULE_DESCRIPTION() in wmod.o"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A warning inside a kernel header (caused by the module's #define) is kept with
	// the module's line that pulled it in, but is not one of the module's own.
	ds = ParseLog(readLog(t, "gcc-arm-6.1-header-warning.log"), Paths{Work: "/tmp/kmodlab-kbuild-2012048513", Files: map[string]bool{"hmod.c": true}})
	if len(ds) != 1 || ds[0].InModule || ds[0].String() != `arch/arm/include/asm/current.h:67: "current" redefined (included from hmod.c:2)` {
		t.Fatalf("%+v", ds)
	}
	if f, l, ok := ds[0].SourceLine(); !ok || f != "hmod.c" || l != 2 {
		t.Errorf("source line %s:%d", f, l)
	}
	if len(ModuleWarnings(ds)) != 0 {
		t.Error("a header's warning counted as the module's")
	}
}

func TestParseLogMakeModpostAssembler(t *testing.T) {
	ds := ParseLog(readLog(t, "misc.log"), Paths{Work: "/tmp/kmodlab-kbuild-9", Files: map[string]bool{"Kbuild": true}})
	var got []string
	for _, d := range ds {
		got = append(got, d.Tool+" "+d.Severity+" "+d.String())
	}
	want := []string{
		"make error Kbuild:2: missing separator",
		"make error make: no rule to make gone.o (is its source missing?)",
		`modpost error modpost: "blk_queue_logical_block_size" [rapiddisk.ko] undefined!`,
		"cc error /tmp/ccQ1x2.s:41: bad instruction `ldrexd r0,[r1]'",
	}
	// The driver's "unrecognized command-line option" has no place: it is the
	// toolchain's, not the module's, and is not a diagnostic.
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, _, ok := ds[3].SourceLine(); ok {
		t.Error("an assembler temp file is no source line of the module")
	}
}

func TestParseLogToolchainFailureHasNoError(t *testing.T) {
	log := "make: Entering directory '/h'\n" +
		"gcc-14: error: unrecognized command-line option '-fmin-function-alignment=16'\n" +
		"/h/scripts/basic/fixdep: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by /h/scripts/basic/fixdep)\n" +
		"make[2]: *** [/h/scripts/Makefile.build:243: /tmp/kmodlab-kbuild-1/m.o] Error 1\n"
	if d := FirstError(ParseLog(log, Paths{Work: "/tmp/kmodlab-kbuild-1", Files: map[string]bool{"m.c": true}})); d != nil {
		t.Errorf("the lab's toolchain failing is not an error of the module: %+v", d)
	}
}

func TestParseLogColours(t *testing.T) {
	log := "\x1b[01m\x1b[K/w/a.c:3:1:\x1b[m\x1b[K \x1b[01;31m\x1b[Kerror: \x1b[m\x1b[Kexpected ';' before '}' token\n"
	d := FirstError(ParseLog(log, Paths{Work: "/w", Files: map[string]bool{"a.c": true}}))
	if d == nil || d.String() != "a.c:3: expected ';' before '}' token" {
		t.Errorf("%+v", d)
	}
}
