// Package report holds a run's results and writes them: results.json, junit.xml,
// summary.md (also appended to $GITHUB_STEP_SUMMARY), index.html, and the terminal
// verdict matrix.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/observe/kmsg"
	"github.com/kmodlab/kmodlab/lab/trace"
)

// Meets says whether a verdict satisfies an expectation, for a crash that is
// attributed to the job's modules (cells carry Attributed for that).
func Meets(v verdict.Verdict, expect verdict.Expectation) bool {
	return verdict.Meets(verdict.Decision{Verdict: v, Attributed: true}, expect)
}

// Stress sums the stress steps' reports.
type Stress struct {
	Reads      int64   `json:"reads"`
	Writes     int64   `json:"writes"`
	IOErrors   int64   `json:"io_errors"`
	Mismatches int     `json:"mismatches"`
	FirstMS    int64   `json:"first_mismatch_ms"` // -1: none
	FirstStep  string  `json:"first_mismatch_step,omitempty"`
	Seconds    float64 `json:"seconds"`
	Example    string  `json:"example,omitempty"` // one mismatch, described
	Ops        int64   `json:"ops,omitempty"`
	Tools      string  `json:"tools,omitempty"` // the reports' writers
	// Interleavings adds up the reports' stressreport.Report.Interleavings by name:
	// coverage (how often a fuzzer reached each concurrency interleaving), not evidence.
	Interleavings map[string]int64 `json:"interleavings,omitempty"`
}

// Source is a place in the job's sources.
type Source struct {
	File  string `json:"file"` // relative to the job's root
	Line  int    `json:"line"`
	Frame string `json:"frame"` // "userblk_ioctl+0x5dc/0xd8c [userblk] (kmod/userblk.c:503)"
}

// Outcome is what a run of a cell came to: a cell's result and each of its repeats
// have one (embedded: in results.json its fields stand in the cell's, or the run's,
// object).
type Outcome struct {
	Verdict verdict.Verdict `json:"verdict"`
	Met     bool            `json:"met"`
	// Reasons are the verdict's own reasons (a cell's Evidence adds the numbers).
	Reasons []string `json:"reasons,omitempty"`
	// FirstDivergenceMS is the first divergence after stress started (-1 none);
	// StopMS when stress stopped, and StopReason why (a sure verdict, or the end).
	FirstDivergenceMS int64  `json:"first_divergence_ms"`
	StopMS            int64  `json:"stop_ms"`
	StopReason        string `json:"stop_reason,omitempty"`
	// LogDir holds the raw logs.
	LogDir string `json:"log_dir"`
}

// RunResult is one repeat of a cell (kmodlab run --repeat N).
type RunResult struct {
	Repeat int `json:"repeat"`
	Outcome
	Seconds float64 `json:"seconds"`
}

// Cell is one cell's result.
type Cell struct {
	ID     string            `json:"id"`
	Target string            `json:"target"`
	Params map[string]string `json:"params"`
	Runner string            `json:"runner"`
	Outcome
	Expect      verdict.Expectation `json:"expect"`
	Evidence    []string            `json:"evidence"`
	Error       string              `json:"error,omitempty"`
	Seed        int64               `json:"seed"`
	Replay      string              `json:"replay"`
	Trace       *TraceSummary       `json:"trace,omitempty"`
	Stress      *Stress             `json:"stress,omitempty"`
	Crash       *console.Report     `json:"crash,omitempty"`
	Canary      string              `json:"canary,omitempty"`
	Timings     map[string]float64  `json:"timings"`
	Kernel      string              `json:"kernel"`
	ImageHash   string              `json:"image_hash,omitempty"`
	ModuleHash  string              `json:"module_hash,omitempty"`
	Accel       string              `json:"accel,omitempty"`
	Divergences []int64             `json:"divergence_ms,omitempty"` // ms since stress start, for the chart
	Attributed  bool                `json:"attributed,omitempty"`
	// CrashSource is the first frame of the crash in the job's own modules, at its
	// source line (from the built module's debug info), when it could be placed.
	CrashSource *Source      `json:"crash_source,omitempty"`
	Attribution string       `json:"attribution,omitempty"`
	CanaryState string       `json:"canary_state,omitempty"`
	Highmem     bool         `json:"highmem"`
	Window      *kmsg.Window `json:"window,omitempty"`
	// Runs are the repeats (--repeat N), Rate their verdicts ("REPRODUCED 29/30").
	Runs    []RunResult `json:"runs,omitempty"`
	Rate    string      `json:"rate,omitempty"`
	MetRuns int         `json:"met_runs,omitempty"`
	// Build is how the job's modules built for the cell's kernel (build.go).
	Build *Build `json:"build,omitempty"`
	// BuildSource is a BUILD-FAILED cell's first error at its source line.
	BuildSource *Source `json:"build_source,omitempty"`
	// Tests are the KTAP steps' test cases (KUnit, kselftest): tests.go.
	Tests []verdict.Tests `json:"tests,omitempty"`
}

// TraceSummary is the oracle's result for a cell.
type TraceSummary struct {
	Transactions int               `json:"transactions"`
	Reads        int               `json:"reads"`
	Writes       int               `json:"writes"`
	Diverged     int               `json:"diverged"`
	Unparsed     int               `json:"unparsed"`
	Merged       int               `json:"merged,omitempty"`
	Long         int               `json:"long,omitempty"`
	Integrity    int               `json:"integrity_errors,omitempty"`
	UserFaults   int               `json:"user_faults,omitempty"`
	Unstable     int               `json:"unstable_writes,omitempty"`
	Problem      *trace.Problem    `json:"first_problem,omitempty"`
	First        *trace.Divergence `json:"first,omitempty"`
	FirstTable   string            `json:"first_table,omitempty"`
	Kinds        map[string]int    `json:"kinds,omitempty"`
}

// Run is a whole run.
type Run struct {
	Job      string    `json:"job"`
	JobFile  string    `json:"job_file"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Keys     []string  `json:"keys"` // matrix parameter names
	Targets  []string  `json:"targets"`
	Cells    []*Cell   `json:"cells"`
	Version  string    `json:"kmodlab_version"`
	ExitCode int       `json:"exit_code"`
}

// Code is the run's exit code: 2 when a cell hit an infrastructure error, else 1 when
// a cell missed its expectation, else 0.
func (r *Run) Code() int {
	code := ExitOK
	for _, c := range r.Cells {
		if c.Verdict == verdict.Infra {
			return ExitInfra
		}
		if !c.Met {
			code = ExitMismatch
		}
	}
	return code
}

// Exit codes of a run (results.json's exit_code, and every command that runs cells).
const (
	ExitOK       = 0
	ExitMismatch = 1 // a cell's verdict differs from its expectation
	ExitInfra    = 2 // boot, SSH, build or timeout: the lab could not judge
)

// Write writes every report file into dir. Each file appears whole or not at all (a
// full disk leaves no truncated results.json for merge to read).
func (r *Run) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.ExitCode = r.Code()
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "results.json"), data, 0o644); err != nil {
		return err
	}
	junit, err := r.JUnit()
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "junit.xml"), junit, 0o644); err != nil {
		return err
	}
	md := r.Markdown()
	if err := writeFile(filepath.Join(dir, "summary.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if s := os.Getenv("GITHUB_STEP_SUMMARY"); s != "" {
		if f, err := os.OpenFile(s, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.WriteString(md)
			f.Close()
		}
	}
	var tap strings.Builder
	if err := r.KTAP(&tap); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "results.ktap"), []byte(tap.String()), 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "index.html"), []byte(r.HTML()), 0o644)
}

// ProbeSize is what CheckWritable writes: more than a cell's reports, less than its logs.
const ProbeSize = 1 << 20

// CheckWritable makes sure dir can take a run's results before any machine starts: it
// creates dir and writes (and removes) a ProbeSize file in it. A read-only or full disk
// fails here, in seconds and naming the directory, instead of after the whole run, when
// the reports could not be written and the verdicts would be lost.
func CheckWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".kmodlab-probe-*")
	if err != nil {
		return fmt.Errorf("results directory %s: %w", dir, err)
	}
	_, err = f.Write(make([]byte, ProbeSize))
	if err == nil {
		err = f.Sync() // a filesystem that delays allocation says ENOSPC here
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	os.Remove(f.Name())
	if err != nil {
		return fmt.Errorf("results directory %s: cannot write a run's results there: %w", dir, err)
	}
	return nil
}

// writeFile writes data to a temporary file beside file and renames it into place.
func writeFile(file string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), mode)
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// Read loads a results.json.
func Read(file string) (*Run, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &r, nil
}

// columns returns the matrix's column labels (the parameter values after the target).
func (r *Run) grid() (rows []string, cols []string, at map[[2]string]*Cell) {
	at = map[[2]string]*Cell{}
	seenR, seenC := map[string]bool{}, map[string]bool{}
	for _, c := range r.Cells {
		col := strings.TrimPrefix(c.ID, c.Target+"/")
		if col == c.ID {
			col = "-"
		}
		if !seenR[c.Target] {
			seenR[c.Target] = true
			rows = append(rows, c.Target)
		}
		if !seenC[col] {
			seenC[col] = true
			cols = append(cols, col)
		}
		at[[2]string{c.Target, col}] = c
	}
	return rows, cols, at
}

// Matrix is the verdict matrix as text; cells that missed their expectation get a "!".
func (r *Run) Matrix() string {
	rows, cols, at := r.grid()
	w := 12
	for _, t := range rows {
		w = max(w, len(t)+2)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", w, "")
	for _, c := range cols {
		fmt.Fprintf(&b, "%-15s", c)
	}
	b.WriteString("\n")
	for _, t := range rows {
		fmt.Fprintf(&b, "%-*s", w, t)
		for _, col := range cols {
			c := at[[2]string{t, col}]
			v := "-"
			if c != nil {
				v = string(c.Verdict)
				v += c.rateSuffix()
				if !c.Met {
					v += "!"
				}
			}
			fmt.Fprintf(&b, "%-15s", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Details is the per-cell text under the matrix: evidence, the first diverging
// transaction like the seed's table, and the replay line.
func (r *Run) Details() string {
	var b strings.Builder
	for _, c := range r.Cells {
		mark := "as expected"
		if !c.Met {
			mark = "EXPECTED " + strings.ToUpper(string(c.Expect))
		}
		fmt.Fprintf(&b, "\n%s: %s (%s)\n", c.ID, c.Verdict, mark)
		if len(c.Runs) > 1 {
			fmt.Fprintf(&b, "  repeats: %s%s\n", c.Rate, c.divergenceMedian())
		}
		for _, e := range c.Evidence {
			fmt.Fprintf(&b, "  %s\n", e)
		}
		if c.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", firstLines(c.Error, 6))
		}
		if c.Trace != nil && c.Trace.First != nil {
			fmt.Fprintf(&b, "  first diverging transaction (%s: %s):\n", c.Trace.First.Kind, c.Trace.First.Detail)
			for _, l := range strings.Split(strings.TrimRight(c.Trace.FirstTable, "\n"), "\n") {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
		fmt.Fprintf(&b, "  replay: %s\n", c.Replay)
	}
	return b.String()
}

func firstLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = append(l[:n], "…")
	}
	return strings.Join(l, "\n    ")
}

// Counts is how many repeats gave verdict v.
func (c *Cell) Counts(v verdict.Verdict) int {
	n := 0
	for _, r := range c.Runs {
		if r.Verdict == v {
			n++
		}
	}
	return n
}

// divergenceMedian is ", first divergence median 0.9 s" over the repeats that diverged.
func (c *Cell) divergenceMedian() string {
	var ms []int64
	for _, r := range c.Runs {
		if r.FirstDivergenceMS >= 0 {
			ms = append(ms, r.FirstDivergenceMS)
		}
	}
	if len(ms) == 0 {
		return ""
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	return fmt.Sprintf(", first divergence median %.1f s", float64(ms[len(ms)/2])/1000)
}
