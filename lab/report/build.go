package report

import (
	"fmt"
	"strings"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// Build is how the job's modules built for a cell's kernel: the first error (for a
// BUILD-FAILED cell), the modules' own W=1 warnings, each build's time, and the logs
// in the cell's log directory.
type Build struct {
	FirstError string   `json:"first_error,omitempty"` // "rapiddisk.c:815: implicit declaration of …"
	Module     string   `json:"module,omitempty"`      // the module (or binary) it is in
	Warnings   int      `json:"warnings"`              // the modules' own W=1 warnings
	List       []string `json:"warning_list,omitempty"`
	Seconds    float64  `json:"seconds"`               // the builds' time (0 when cached)
	CPUSeconds float64  `json:"cpu_seconds,omitempty"` // their CPU time (make and the compilers)
	Logs       []string `json:"logs,omitempty"`
	Strict     bool     `json:"strict,omitempty"` // warnings fail the build
}

// WarningSummary is "3 W=1 warnings (first: m.c:4: …)", "" with none.
func (b *Build) WarningSummary() string {
	if b == nil || b.Warnings == 0 {
		return ""
	}
	s := fmt.Sprintf("%d W=1 warning", b.Warnings)
	if b.Warnings > 1 {
		s += "s"
	}
	if len(b.List) > 0 {
		s += " (first: " + b.List[0] + ")"
	}
	return s
}

// Warnings is the number of the modules' own W=1 warnings over every cell.
func (r *Run) Warnings() int {
	n := 0
	for _, c := range r.Cells {
		if c.Build != nil {
			n += c.Build.Warnings
		}
	}
	return n
}

// BuildLine is the one-line build summary of a cell for tables: built (with its
// warnings) or its first error.
func (c *Cell) BuildLine() string {
	switch {
	case c.Verdict == verdict.BuildFailed && c.Build != nil:
		return "FAILED " + c.Build.FirstError
	case c.Build != nil && c.Build.Warnings > 0:
		return fmt.Sprintf("%d warning%s", c.Build.Warnings, map[bool]string{true: "s"}[c.Build.Warnings > 1])
	case c.Verdict == verdict.Infra:
		return "INFRA " + strings.Join(c.Reasons, "; ")
	}
	return "built"
}
