package job

import (
	"fmt"
	"strings"
)

// KTAP steps: a step whose results are KTAP test cases (docs/jobs.md, "KUnit and
// kselftest").
//
//   - kunit: MODULE loads a KUnit test module (run, or by default a fresh insmod of
//     DEST/MODULE.ko, else modprobe MODULE) and reads its KTAP from the kernel log
//     records of the step, or, with suites:, from /sys/kernel/debug/kunit/SUITE/results
//     where the kernel has KUNIT_DEBUGFS.
//   - ktap: true reads the step's stdout as KTAP (a kselftest-style program).

// Command is the step's shell command (before Expand): run, or a kunit step's default
// load of its test module.
func (s Step) Command() string {
	if strings.TrimSpace(s.Run) != "" || s.KUnit == "" {
		return s.Run
	}
	m := s.KUnit
	return fmt.Sprintf("rmmod %[1]s 2>/dev/null; if [ -f {{.dest}}/%[1]s.ko ]; then insmod {{.dest}}/%[1]s.ko; else modprobe %[1]s; fi", m)
}

// TestsKind is "kunit", "ktap" or "" (not a KTAP step).
func (s Step) TestsKind() string {
	switch {
	case s.KUnit != "":
		return "kunit"
	case s.KTAP:
		return "ktap"
	}
	return ""
}

// checkTests checks a step's KTAP fields ("" when fine).
func (s Step) checkTests() (field, problem string) {
	switch {
	case s.KUnit != "" && s.KTAP:
		return "ktap", "a kunit step reads the kernel log; ktap: true is for a program whose stdout is KTAP"
	case s.KUnit != "" && checkName(s.KUnit) != "":
		return "kunit", checkName(s.KUnit)
	case len(s.Suites) > 0 && s.KUnit == "":
		return "suites", "only a kunit step reads suites from debugfs"
	case s.Background && s.TestsKind() != "":
		return "background", "a KTAP step is waited for; it cannot run in the background"
	}
	for _, su := range s.Suites {
		if su == "" || strings.ContainsAny(su, "/ \t\n*?") {
			return "suites", fmt.Sprintf("%q is no KUnit suite name", su)
		}
	}
	return "", ""
}
