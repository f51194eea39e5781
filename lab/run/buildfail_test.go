package run

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/report"
)

// failBuild is a strategy whose module build fails as build.Build does.
type failBuild struct {
	noBuild
	err    error
	result *build.Result
}

func (f failBuild) Prepare(ctx context.Context, name, src string) (string, error) {
	if name == "userblk" && f.err != nil {
		return "", f.err
	}
	return "h-" + name, nil
}

func (f failBuild) Result(name string) *build.Result {
	if name == "userblk" {
		return f.result
	}
	return nil
}

type buildMachines struct {
	machines
	s   build.Strategy
	err error // the strategy itself (a QEMU target's headers)
}

func (m buildMachines) Describe(string) (runner.Info, error) {
	i := m.f.Info()
	i.Kind = "qemu"
	return i, nil
}

func (m buildMachines) Strategy(context.Context, string, string, bool) (build.Strategy, error) {
	return m.s, m.err
}

// runJobWith runs a job text like runJob, on the given machines.
func runJobWith(t *testing.T, m Machines, jobText string) *report.Run {
	t.Helper()
	j := loadJob(t, jobText)
	dir := filepath.Dir(j.File)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Job: j, Cells: j.Cells(), Machines: m, CacheDir: cacheDir, Out: filepath.Join(dir, "out"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestBuildFailedIsAFinding(t *testing.T) {
	log := "  CC [M]  /tmp/kmodlab-kbuild-1/userblk.o\n/tmp/kmodlab-kbuild-1/userblk.c:824:9: error: implicit declaration of function 'blk_queue_logical_block_size' [-Werror=implicit-function-declaration]\n"
	ds := build.ParseLog(log, build.Paths{Work: "/tmp/kmodlab-kbuild-1", Files: map[string]bool{"userblk.c": true}})
	res := &build.Result{Log: log, Diagnostics: ds}
	bf := &build.Failure{Src: ".", Release: "6.12.1", Result: res, First: build.FirstError(ds)}
	f := newFake()
	good(f)
	for _, tc := range []struct {
		name    string
		expect  string
		verdict verdict.Verdict
		met     bool
		code    int
	}{
		{"unexpected", "", verdict.BuildFailed, false, 1},
		{"expected", "  cells: {\"fake/a\": build-fails}\n", verdict.BuildFailed, true, 0},
	} {
		text := testJob + tc.expect
		rep := runJobWith(t, buildMachines{machines: machines{f}, s: failBuild{err: bf, result: res}}, text)
		c := one(t, rep)
		if c.Verdict != tc.verdict || c.Met != tc.met || rep.Code() != tc.code {
			t.Fatalf("%s: %s met=%v exit %d, want %s met=%v exit %d (%v)", tc.name, c.Verdict, c.Met, rep.Code(), tc.verdict, tc.met, tc.code, c.Reasons)
		}
		want := "module userblk does not build: userblk.c:824: implicit declaration of function 'blk_queue_logical_block_size'"
		if len(c.Reasons) != 1 || c.Reasons[0] != want || c.Build == nil || c.Build.FirstError != strings.TrimPrefix(want, "module userblk does not build: ") {
			t.Errorf("%s: reasons %q build %+v", tc.name, c.Reasons, c.Build)
		}
		if c.BuildSource == nil || c.BuildSource.Line != 824 || !strings.HasSuffix(c.BuildSource.File, "userblk.c") {
			t.Errorf("%s: source %+v", tc.name, c.BuildSource)
		}
		data, err := os.ReadFile(c.Build.Logs[0])
		if err != nil || string(data) != log {
			t.Errorf("%s: the full build log is not in the cell's logs: %v", tc.name, err)
		}
	}
}

func TestLabPiecesStayInfra(t *testing.T) {
	f := newFake()
	good(f)
	for _, tc := range []struct {
		name   string
		m      buildMachines
		reason string
	}{
		{"headers", buildMachines{machines: machines{f}, err: errors.New("headers for x86_64: pinned version 6.1.176-1 is no longer served")},
			"kernel headers: headers for x86_64: pinned version 6.1.176-1 is no longer served"},
		{"toolchain", buildMachines{machines: machines{f}, s: failBuild{err: errors.New("arm-linux-gnueabihf-gcc not found")}},
			"toolchain: arm-linux-gnueabihf-gcc not found"},
		{"kbuild without a compiler error", buildMachines{machines: machines{f}, s: failBuild{err: errors.New("build module . for 6.12.1: exit status 2 (no error in the module's sources: the kernel headers or the toolchain failed)")}},
			"toolchain: build module . for 6.12.1: exit status 2 (no error in the module's sources: the kernel headers or the toolchain failed)"},
	} {
		rep := runJobWith(t, tc.m, testJob)
		c := one(t, rep)
		if c.Verdict != verdict.Infra || rep.Code() != 2 || len(c.Reasons) != 1 || c.Reasons[0] != tc.reason {
			t.Errorf("%s: %s exit %d %q, want INFRA %q", tc.name, c.Verdict, rep.Code(), c.Reasons, tc.reason)
		}
	}
	// A job's Go binary that does not compile is the job's.
	text := strings.Replace(testJob, "build: {modules: [{name: userblk, dir: .}]}", "build: {binaries: [{name: tool, package: ./nosuch}]}", 1)
	rep := runJobWith(t, buildMachines{machines: machines{f}, s: noBuild{}}, text)
	if c := one(t, rep); c.Verdict != verdict.BuildFailed || !strings.HasPrefix(c.Reasons[0], "binary tool does not build: ") {
		t.Errorf("binary: %s %q", c.Verdict, c.Reasons)
	}
}

func TestBuildWarningsAreEvidence(t *testing.T) {
	log := "/tmp/kmodlab-kbuild-1/userblk.c:12:5: warning: no previous prototype for 'f' [-Wmissing-prototypes]\n"
	res := &build.Result{Log: log, Diagnostics: build.ParseLog(log, build.Paths{Work: "/tmp/kmodlab-kbuild-1"})}
	f := newFake()
	good(f)
	rep := runJobWith(t, buildMachines{machines: machines{f}, s: failBuild{result: res}}, testJob)
	c := one(t, rep)
	if c.Verdict != verdict.Clean || c.Build == nil || c.Build.Warnings != 1 ||
		!strings.Contains(strings.Join(c.Evidence, "\n"), "build: 1 W=1 warning (first: userblk: userblk.c:12: no previous prototype for 'f')") {
		t.Errorf("%s %+v %q", c.Verdict, c.Build, c.Evidence)
	}
}

// nativeFail builds on the machine (a board), where the module does not build.
type nativeFail struct {
	noBuild
	bf *build.Failure
}

func (n nativeFail) Install(ctx context.Context, r runner.Runner, name, src, dest string) (string, error) {
	if name == "userblk" {
		return "", n.bf
	}
	return "", nil
}

func TestNativeBuildFailedOnTheMachine(t *testing.T) {
	log := "/root/kmodlab-src/userblk/userblk.c:5:1: error: unknown type name 'blk_opf_t'\n"
	ds := build.ParseLog(log, build.Paths{Work: "/root/kmodlab-src/userblk", Files: map[string]bool{"userblk.c": true}})
	bf := &build.Failure{Src: ".", Release: "the machine's kernel", Result: &build.Result{Log: log, Diagnostics: ds}, First: build.FirstError(ds)}
	f := newFake()
	good(f)
	rep := runJobWith(t, buildMachines{machines: machines{f}, s: nativeFail{bf: bf}}, testJob)
	c := one(t, rep)
	if c.Verdict != verdict.BuildFailed || rep.Code() != 1 || c.Reasons[0] != "module userblk does not build: userblk.c:5: unknown type name 'blk_opf_t'" {
		t.Errorf("%s exit %d %q", c.Verdict, rep.Code(), c.Reasons)
	}
}
