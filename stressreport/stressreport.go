// Package stressreport is the one definition of the stress-report JSON a stress step
// writes and the lab reads (docs/formats.md describes it for tools in other languages).
// daemon/blkstress and daemon/userblkfuzz write it; lab/run reads it. A foreign tool only has
// to write the fields it knows; "details" may hold anything, and the lab shows a shape it
// does not know as text.
package stressreport

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Report is one stress step's result.
type Report struct {
	// Tool names the writer ("blkstress", "userblkfuzz", …); the lab words its verdict
	// evidence for the tools it knows and neutrally for the rest.
	Tool string `json:"tool,omitempty"`
	Mode string `json:"mode,omitempty"`
	// Device or file the tool exercised.
	Device string `json:"device,omitempty"`
	Seed   int64  `json:"seed"`
	// Threads the tool ran.
	Threads int `json:"threads,omitempty"`
	// Seconds the tool ran.
	Seconds float64 `json:"seconds"`
	// Reads and Writes are operations whose data the tool verified (evidence for clean).
	Reads  int64 `json:"reads"`
	Writes int64 `json:"writes"`
	// Ops counts other checked operations (a fuzzer's ioctl calls).
	Ops          int64 `json:"ops,omitempty"`
	BytesWritten int64 `json:"bytes_written,omitempty"`
	BytesRead    int64 `json:"bytes_read,omitempty"`
	// IOErrors counts operations the kernel failed (EIO on read/write, a failed fsync,
	// sync or write-back). They are never counted as mismatches: a lost write is not the
	// data-corruption bug.
	IOErrors int64 `json:"io_errors"`
	// Mismatches counts checks that failed: data read back wrong, or (fuzzers) violated
	// invariants.
	Mismatches int `json:"mismatches"`
	// FirstMS is when the first mismatch was seen, ms after the tool started; -1: none.
	FirstMS int64 `json:"first_mismatch_ms"`
	// Details describe mismatches; blkstress writes []Mismatch, other tools anything.
	Details json.RawMessage `json:"details,omitempty"`
	// Errors are the tool's own problems (could not open the device, …).
	Errors []string `json:"errors,omitempty"`
	// Interleavings counts, by name, how often the tool reached the concurrency
	// interleavings it exists to reach. They are coverage, not evidence: a fuzzer that
	// never reached an interleaving checked nothing about it, however clean it came out.
	// userblkfuzz writes the driver's event counters (FuzzInterleavings and the others
	// the module counts); Unreached tells which ones a run missed.
	Interleavings map[string]int64 `json:"interleavings,omitempty"`
}

// The interleavings userblkfuzz must reach (keys of Report.Interleavings; the module's
// event names, kmod/uapi/userblk.h).
const (
	TimeoutBusy   = "timeout_busy"  // a submitter's io_timeout found its request being copied (BUSY)
	TimeoutSent   = "timeout_sent"  // ... found it with the daemon (SENT) and failed it
	CompleteBusy  = "complete_busy" // COMPLETE named a request while it was being copied
	CloseBusy     = "close_busy"    // the control fd was closed while a request was being copied
	MidbioError   = "midbio_error"  // a multi-segment bio failed after its first segment
	MultisegBio   = "multiseg_bio"  // a bio of more than one segment (not required: midbio_error implies it)
	TimeoutQueued = "timeout_queued"
	DeadBusy      = "dead_busy" // the disk died (SHUTDOWN, close) while a request was being copied
)

// FuzzInterleavings are the interleavings a userblkfuzz run is judged on.
var FuzzInterleavings = []string{TimeoutBusy, TimeoutSent, CompleteBusy, CloseBusy, MidbioError}

// Unreached returns the names among want that the report counts fewer than min times,
// in want's order.
func (r *Report) Unreached(want []string, min int64) []string {
	var out []string
	for _, n := range want {
		if r.Interleavings[n] < min {
			out = append(out, n)
		}
	}
	return out
}

// Mismatch is one block that read back wrong (blkstress's details).
type Mismatch struct {
	Path      string `json:"path,omitempty"`
	Block     int64  `json:"block"`
	Offset    int64  `json:"offset"`
	WantGen   uint64 `json:"want_gen"`
	WantCRC   string `json:"want_crc"`
	SeenCRC   string `json:"seen_crc"`
	Holds     string `json:"holds"` // what the bytes look like: "block 12 gen 3", "zeros", "garbage"
	Thread    int    `json:"thread"`
	CPU       int    `json:"cpu"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

// Violation is one broken invariant (userblkfuzz's details).
type Violation struct {
	Invariant string `json:"invariant"` // e.g. "two disks from one fd"
	Detail    string `json:"detail"`
	Seed      int64  `json:"seed"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

// Parse reads a report; it needs only valid JSON with the numeric fields it has.
func Parse(data []byte) (*Report, error) {
	r := &Report{FirstMS: -1}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("stress report: %w", err)
	}
	return r, nil
}

// BlockMismatches returns blkstress-shaped details, or nil when details have another
// shape.
func (r *Report) BlockMismatches() []Mismatch {
	var m []Mismatch
	if len(r.Details) == 0 || json.Unmarshal(r.Details, &m) != nil {
		return nil
	}
	for _, x := range m {
		if x.WantCRC == "" && x.SeenCRC == "" {
			return nil
		}
	}
	return m
}

// Write writes the report as indented JSON to file.
func (r *Report) Write(file string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(data, '\n'), 0o644)
}

// ProgressPrefix starts a progress line: a stress tool that prints them (to stdout or
// stderr, while it runs) lets the lab size its stress by evidence. A tool that prints
// them promises to stop cleanly on SIGTERM: finish the check in hand, write its report
// and exit 0.
const ProgressPrefix = "kmodlab-progress "

// Totals are the counts of checked operations: a running tool's progress so far, or
// what a cell's reports add up to (the fields of Report with the same names).
type Totals struct {
	Reads      int64 `json:"reads"`
	Writes     int64 `json:"writes"`
	Ops        int64 `json:"ops,omitempty"`
	IOErrors   int64 `json:"io_errors"`
	Mismatches int   `json:"mismatches"`
}

// Progress is a running tool's counts so far.
type Progress = Totals

// Add adds o's counts to t: the one place counts of several reports are summed.
func (t *Totals) Add(o Totals) {
	t.Reads += o.Reads
	t.Writes += o.Writes
	t.Ops += o.Ops
	t.IOErrors += o.IOErrors
	t.Mismatches += o.Mismatches
}

// IO is the verified reads and writes.
func (t Totals) IO() int64 { return t.Reads + t.Writes }

// Totals are the report's counts.
func (r *Report) Totals() Totals {
	return Totals{Reads: r.Reads, Writes: r.Writes, Ops: r.Ops, IOErrors: r.IOErrors, Mismatches: r.Mismatches}
}

// Line is the progress line for p, without a newline.
func (p Progress) Line() string {
	b, _ := json.Marshal(p)
	return ProgressPrefix + string(b)
}

// ParseProgress reads a progress line; ok is false for any other line.
func ParseProgress(line string) (p Progress, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimRight(line, "\r\n"), ProgressPrefix)
	if !found || json.Unmarshal([]byte(rest), &p) != nil {
		return Progress{}, false
	}
	return p, true
}
