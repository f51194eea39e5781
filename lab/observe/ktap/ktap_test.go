package ktap

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func load(t *testing.T, name string) *Doc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if strings.HasSuffix(name, ".log") {
		text = FromKernelLog(text)
	}
	return Parse(text)
}

type want struct {
	path   string
	status Status
}

func casesOf(d *Doc) []want {
	var out []want
	for _, c := range d.Cases() {
		out = append(out, want{c.Path, c.Status})
	}
	return out
}

func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		file    string
		cases   []want
		problem string // substring of the problem, "" none
		trunc   bool
		line    int
	}{
		{file: "nested.log", cases: []want{
			{"kmodlab_example.checksum_empty", Pass},
			{"kmodlab_example.checksum_known", Pass},
			{"kmodlab_example.checksum_params.len 1", Pass},
			{"kmodlab_example.checksum_params.len 64", Pass},
			{"kmodlab_example.checksum_params.len 4096", Pass},
			{"kmodlab_example_fold.fold_carry", Fail},
			{"kmodlab_example_fold.fold_zero", Pass},
		}},
		{file: "skip_todo.ktap", cases: []want{
			{"quirks.needs_highmem", Skip},
			{"quirks.known_race", Todo},
			{"quirks.dashed_name", Pass},
			{"quirks.expected_failure", Todo},
		}},
		{file: "kselftest.tap", cases: []want{
			{"selftests: kmodlab: open", Pass},
			{"selftests: kmodlab: bad_ioctl", Fail},
			{"selftests: kmodlab: huge", Skip},
		}},
		// The oops kills the test thread; KUnit never prints the rest.
		{file: "crash.log", cases: []want{{"kmodlab_example.checksum_empty", Pass}},
			problem: `ends inside subtest "kmodlab_example" (from line 3)`, trunc: true, line: 15},
		// KUnit caught the fault and went on: the oops lines are the case's log.
		{file: "faulted.log", cases: []want{
			{"kmodlab_example.checksum_null", Fail},
			{"kmodlab_example.checksum_known", Pass},
		}},
		{file: "wrong_number.ktap", cases: []want{{"first", Pass}}, problem: "test number 3, want 2", line: 4},
		{file: "short_plan.ktap", cases: []want{{"first", Pass}, {"second", Pass}},
			problem: "the plan (line 2) says 3 tests, 2 results", trunc: true, line: 4},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d := load(t, tc.file)
			if got := casesOf(d); !reflect.DeepEqual(got, tc.cases) {
				t.Errorf("cases:\n got %v\nwant %v", got, tc.cases)
			}
			switch {
			case tc.problem == "" && d.Problem != nil:
				t.Errorf("unexpected problem: %v", d.Problem)
			case tc.problem != "" && d.Problem == nil:
				t.Errorf("no problem, want %q", tc.problem)
			case tc.problem != "":
				if !strings.Contains(d.Problem.Msg, tc.problem) || d.Problem.Truncated != tc.trunc || d.Problem.Line != tc.line {
					t.Errorf("problem %+v, want %q truncated=%v line %d", d.Problem, tc.problem, tc.trunc, tc.line)
				}
			}
		})
	}
}

func TestDiagnosticsStayWithTheirCase(t *testing.T) {
	d := load(t, "nested.log")
	var fail Case
	for _, c := range d.Cases() {
		if c.Status == Fail {
			fail = c
		}
	}
	if len(fail.Log) != 4 || !strings.Contains(fail.Log[0], "EXPECTATION FAILED at examples/kunit/kunit_example.c:61") ||
		fail.Log[2] != "kx_fold(0x1ffff) == 2 (0x2)" {
		t.Errorf("log of the failing case: %q", fail.Log)
	}
	// The line numbers are the extracted stream's: the failing result is its 26th line.
	if fail.Line != 26 {
		t.Errorf("line %d, want 26", fail.Line)
	}
	f := load(t, "faulted.log")
	c := f.Cases()[0]
	if !strings.Contains(strings.Join(c.Log, "\n"), "RIP: 0010:kx_checksum") || !strings.Contains(c.Log[len(c.Log)-1], "try faulted") {
		t.Errorf("the faulted case's log lacks the oops: %q", c.Log)
	}
	s := load(t, "skip_todo.ktap")
	if got := s.Cases()[0].Directive; got != "SKIP this machine has no HIGHMEM" {
		t.Errorf("directive %q", got)
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct{ in, msg string }{
		{"", "no KTAP or TAP version line"},
		{"hello\nok 1 x\n", "no KTAP or TAP version line"},
		{"KTAP version 1\n1..1\n1..1\nok 1 a\n", "a second plan (the first at line 2)"},
		{"KTAP version 1\nok x\n", "needs a test number"},
		{"KTAP version 1\n1..1\n    # Subtest: a\n    ok 1 b\n  ok 1 a\n", "indentation 2 matches no open level"},
		{"KTAP version 1\n1..2\n    # Subtest: a\n    ok 1 b\n    # Subtest: c\n", ""},
		{"KTAP version 1\n1..1\n    # Subtest: a\n    1..2\n    ok 1 b\nok 1 a\n", "plan (line 4) says 2 tests, 1 ran"},
		{"KTAP version 1\nok 1 a\nKTAP version 1\n", "a version line after the level's tests began"},
		{"KTAP version 1\n1..1\nBail out! no memory\n", "bail out"},
		{"KTAP version 1\n1..1\nok 1 a\nok 2 b\n", "more results than the plan"},
	}
	for _, tc := range cases {
		d := Parse(tc.in)
		if tc.msg == "" {
			continue
		}
		if d.Problem == nil || !strings.Contains(d.Problem.Msg, tc.msg) {
			t.Errorf("%q: problem %v, want %q", tc.in, d.Problem, tc.msg)
		}
	}
	// A subtest header at the same level after results: the second subtest has no
	// result line when the stream ends.
	d := Parse("KTAP version 1\n1..2\n    # Subtest: a\n    ok 1 b\nok 1 a\n    # Subtest: c\n    ok 1 d\n")
	if d.Problem == nil || !d.Problem.Truncated || !strings.Contains(d.Problem.Msg, `"c"`) {
		t.Errorf("open subtest at the end: %v", d.Problem)
	}
}

func TestDirectivesAndNames(t *testing.T) {
	for _, tc := range []struct {
		line      string
		name      string
		status    Status
		directive string
	}{
		{"ok 1 plain", "plain", Pass, ""},
		{"ok 1 - dashed", "dashed", Pass, ""},
		{"not ok 1 x # TODO later", "x", Todo, "TODO later"},
		{"ok 1 x # todo bonus", "x", Pass, "todo bonus"},
		{"not ok 1 x # SKIP why", "x", Skip, "SKIP why"},
		{"not ok 1 x # TIMEOUT", "x", Fail, "TIMEOUT"},
		{"ok 1 test#1", "test#1", Pass, ""},
		{`ok 1 a \# b`, "a # b", Pass, ""},
		{"ok 1", "", Pass, ""},
	} {
		tt, err := parseResult(tc.line)
		if err != "" || tt.Name != tc.name || tt.Status != tc.status || tt.Directive != tc.directive {
			t.Errorf("%q: %+v %s", tc.line, tt, err)
		}
	}
}

func TestWriteReadsBack(t *testing.T) {
	nodes := []Node{
		{Name: "x86_64/kmap", Status: Pass, Subtests: []Node{
			{Name: "suite", Status: Fail, Subtests: []Node{
				{Name: "a # not a directive", Status: Pass},
				{Name: "b", Status: Fail, Diag: []string{"EXPECTATION FAILED\n  at x.c:3"}},
			}},
		}},
		{Name: "armv7-lpae/kmap", Status: Skip, Directive: "INFRA boot failed"},
		{Name: "i386-pae/kmap", Status: Todo},
	}
	var b strings.Builder
	if err := Write(&b, nodes); err != nil {
		t.Fatal(err)
	}
	d := Parse(b.String())
	if d.Problem != nil {
		t.Fatalf("%v\n%s", d.Problem, b.String())
	}
	got := casesOf(d)
	exp := []want{{"x86_64/kmap.suite.a # not a directive", Pass}, {"x86_64/kmap.suite.b", Fail},
		{"armv7-lpae/kmap", Skip}, {"i386-pae/kmap", Todo}}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("read back %v\nwant %v\n%s", got, exp, b.String())
	}
	if c := d.Cases()[1]; !reflect.DeepEqual(c.Log, []string{"# EXPECTATION FAILED", "#   at x.c:3"}) {
		t.Errorf("diag read back %q", c.Log)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.*")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := Parse(FromKernelLog(s))
		d2 := Parse(s)
		for _, x := range []*Doc{d, d2} {
			if x.Problem != nil && (x.Problem.Line < 1 || x.Problem.Line > max(1, x.Lines)) {
				t.Fatalf("problem line %d of %d", x.Problem.Line, x.Lines)
			}
			cs := x.Cases()
			// Writing the cases and reading them back gives the same cases.
			var nodes []Node
			for _, c := range cs {
				nodes = append(nodes, Node{Name: c.Path, Status: c.Status})
			}
			var b strings.Builder
			Write(&b, nodes)
			back := Parse(b.String())
			if back.Problem != nil {
				t.Fatalf("written KTAP does not parse: %v\n%s", back.Problem, b.String())
			}
			if len(back.Cases()) != len(cs) {
				t.Fatalf("wrote %d cases, read %d back", len(cs), len(back.Cases()))
			}
		}
	})
}
