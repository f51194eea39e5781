package job

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The names and values of a job file reach file names on the host (a cell's results
// directory, the Go binary cache), file names and shell commands on the machine, cell
// IDs, --cell patterns and kmodlab plan's argument lists. Each is checked here for what
// it may hold; the error says why.

var (
	// A name: a step, a binary, a module.
	nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	// A matrix value or target: one path element of a cell ID, with no glob or list
	// characters (--cell takes globs and comma lists) and nothing a shell splits.
	valueRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+=:@%-]*$`)
	// A template variable: {{.name}} must reach it.
	wordRe = regexp.MustCompile(`^[A-Za-z_]\w*$`)
)

// checkName says what is wrong with a step, binary or module name ("" when nothing).
func checkName(s string) string {
	if s == "" {
		return "missing"
	}
	if m := checkChars(s, nameRe, "letters, digits, '.', '_', '+' and '-'",
		"the name becomes a file name on the machine and in the results directory"); m != "" {
		return m
	}
	if strings.HasPrefix(strings.ToLower(s), "kmodlab") {
		return fmt.Sprintf("%q: names starting with kmodlab are the lab's own (its agent, canary and step files)", s)
	}
	return ""
}

// checkValue says what is wrong with a matrix value or a target name.
func checkValue(s string) string {
	if s == "" {
		return "empty"
	}
	return checkChars(s, valueRe, "letters, digits and . _ + = : @ % -",
		"it is part of the cell's ID, its --cell pattern and its results directory")
}

// checkChars says what is wrong with a non-empty s that must match re and hold no
// "..": which characters it may have (chars) and why (the place it ends up).
func checkChars(s string, re *regexp.Regexp, chars, why string) string {
	if re.MatchString(s) && !strings.Contains(s, "..") {
		return ""
	}
	return fmt.Sprintf("%q: only %s, not first and no '..' (%s)", s, chars, why)
}

// labFiles are what the lab itself writes into a cell's results directory: a collected
// file or a background step's log may not take these names.
var labFiles = []string{"kern.log", "console.log", "diagnose.log", "error.txt", "stress-*.json",
	"setup-*.log", "stress-*.log", "teardown-*.log", "run[0-9]*", "build-*.log", "*.ktap"}

// reservedFile reports the lab's pattern a results-directory file name matches.
func reservedFile(base string) string {
	for _, p := range labFiles {
		if ok, _ := path.Match(p, base); ok {
			return p
		}
	}
	return ""
}

// checkMode says what is wrong with a file mode ("0755").
func checkMode(s string) string {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return fmt.Sprintf("%q: want an octal mode like \"0644\" or \"0755\"", s)
	}
	return ""
}

// share reports whether f is a share (0 to 1, not NaN).
func share(f float64) bool { return f >= 0 && f <= 1 }

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
