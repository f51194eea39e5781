package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHeaders is a "kernel tree" whose Makefile prints what a compiler would for the
// module in M= and exits as told, so Build's reading of a failure is tested without
// real headers.
func fakeHeaders(t *testing.T, recipe string) string {
	t.Helper()
	dir := t.TempDir()
	mk := "modules:\n" + recipe + "\n"
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(mk), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func module(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "m.c"), []byte("int x;\n"), 0o644)
	os.WriteFile(filepath.Join(src, "Kbuild"), []byte("obj-m := m.o\n"), 0o644)
	return src
}

func TestBuildTellsTheModuleFromTheLab(t *testing.T) {
	ctx := context.Background()
	src := module(t)
	// A compiler error in the module's file: the module's failure, at its line.
	hdr := fakeHeaders(t, "\t@echo \"$(M)/m.c:7:3: error: 'y' undeclared (first use in this function)\"; exit 1")
	r, err := Build(ctx, Kbuild{Headers: hdr, Release: "6.12.1-test"}, src, t.TempDir(), Options{})
	var f *Failure
	if !errors.As(err, &f) || f.First == nil || f.First.String() != "m.c:7: 'y' undeclared (first use in this function)" {
		t.Fatalf("want a Failure at m.c:7, got %v", err)
	}
	if r == nil || !strings.Contains(r.Log, "undeclared") || r.Seconds <= 0 {
		t.Errorf("result %+v", r)
	}
	// make failing with nothing of the module's in the log: the lab's (headers, toolchain).
	hdr = fakeHeaders(t, "\t@echo \"gcc: error: unrecognized command-line option '-fmin-function-alignment=16'\"; exit 2")
	_, err = Build(ctx, Kbuild{Headers: hdr, Release: "6.12.1-test"}, src, t.TempDir(), Options{})
	if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), "the kernel headers or the toolchain failed") {
		t.Errorf("want the lab's failure, got %v", err)
	}
	// A missing cross compiler is the lab's too.
	_, err = Build(ctx, Kbuild{Headers: hdr, CrossCompile: "kmodlab-no-such-", CrossPackage: "gcc-nosuch"}, src, t.TempDir(), Options{})
	if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), "apt-get install gcc-nosuch") {
		t.Errorf("want the missing compiler, got %v", err)
	}
}

func TestBuildWarningsAndStrict(t *testing.T) {
	ctx := context.Background()
	src := module(t)
	recipe := "\t@echo \"$(M)/m.c:1:5: warning: no previous prototype for 'x' [-Wmissing-prototypes]\"; " +
		"echo \"$(M)/../elsewhere/h.h:2:1: warning: in a header\"; echo x > $(M)/m.ko"
	hdr := fakeHeaders(t, recipe)
	cache := t.TempDir()
	r, err := Build(ctx, Kbuild{Headers: hdr, Release: "6.1.0-test"}, src, cache, Options{})
	if err != nil || len(r.KOs) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
	if w := r.Warnings(); len(w) != 1 || w[0].String() != "m.c:1: no previous prototype for 'x'" {
		t.Errorf("the module's own warnings: %+v", w)
	}
	// Cached: the same warnings, read from the saved log.
	again, err := Build(ctx, Kbuild{Headers: hdr, Release: "6.1.0-test"}, src, cache, Options{})
	if err != nil || !again.Cached || len(again.Warnings()) != 1 {
		t.Errorf("cached: %v %+v", err, again)
	}
	_, err = Build(ctx, Kbuild{Headers: hdr, Release: "6.1.0-test"}, src, cache, Options{Strict: true})
	var f *Failure
	if !errors.As(err, &f) || !f.Strict || f.First == nil || f.First.Line != 1 {
		t.Errorf("strict: want a Failure on the warning, got %v", err)
	}
}
