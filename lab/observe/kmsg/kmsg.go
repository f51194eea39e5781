// Package kmsg reads the kernel log as the kernel keeps it: records with sequence
// numbers (/dev/kmsg). The lab cuts each cell's window by sequence number, not by a
// marker line, so a window is exactly the records the kernel wrote between the cell's
// start and end, on QEMU guests and boards alike, and a record the ring buffer dropped
// shows as a gap instead of going unnoticed. The agent (agent/main.go) runs on the
// machine; this package builds it and parses what it prints.
package kmsg

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed agent/main.go
var agentSource []byte

// AgentName is the agent's file name on the machine.
const AgentName = "kmodlab-kmsg"

// BuildAgent cross-builds the agent for goarch (goarm for arm) into cacheDir and returns
// its path. Builds are cached by source hash and architecture.
func BuildAgent(ctx context.Context, cacheDir, goarch, goarm string) (string, error) {
	sum := sha256.Sum256(agentSource)
	dir := filepath.Join(cacheDir, "kmsg-agent", hex.EncodeToString(sum[:8])+"-"+goarch+goarm)
	bin := filepath.Join(dir, AgentName)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	src, err := os.MkdirTemp(cacheDir, "kmsg-agent-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), agentSource, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module kmodlab.kmsg/agent\n\ngo 1.21\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm, "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s for %s: %w\n%s", AgentName, goarch, err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// Record is one kernel log record.
type Record struct {
	Seq   uint64
	TS    int64 // µs since boot
	Level int
	Text  string
}

// Line prints the record like dmesg does, so the lab's other readers (and people) see
// a familiar kern.log.
func (r Record) Line() string {
	return fmt.Sprintf("[%5d.%06d] %s", r.TS/1e6, r.TS%1e6, r.Text)
}

// Parse reads one line of the agent's output ("pri,seq,ts,flags;text").
func Parse(line string) (Record, error) {
	head, text, ok := strings.Cut(line, ";")
	if !ok {
		return Record{}, fmt.Errorf("kmsg record without ';': %.60q", line)
	}
	f := strings.Split(head, ",")
	if len(f) < 3 {
		return Record{}, fmt.Errorf("kmsg record header %.40q has %d fields", head, len(f))
	}
	pri, err1 := strconv.Atoi(f[0])
	seq, err2 := strconv.ParseUint(f[1], 10, 64)
	ts, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Record{}, fmt.Errorf("kmsg record header %.40q is not numeric", head)
	}
	return Record{Seq: seq, TS: ts, Level: pri & 7, Text: unescape(text)}, nil
}

// unescape turns the kernel's \xNN escapes back into bytes (kept as text when they
// would be control characters other than tab).
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil && (v >= 0x20 || v == '\t') {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Window is one cell's records: those after Start, up to End, the newest record at
// collect. While the cell runs it follows them (Add), counting records lost before the
// first one it sees and between any two; the verdict and the report read it after.
type Window struct {
	Start   uint64 `json:"start"`          // the newest record before the cell began
	End     uint64 `json:"end"`            // the newest record at collect (set when the window is closed)
	Records int    `json:"records"`        // records seen inside the window
	Lost    int    `json:"lost"`           // records missing (sequence gaps), including at the start
	Gaps    []Gap  `json:"gaps,omitempty"` // where, the first few
	Next    uint64 `json:"-"`              // the sequence number expected next
	Bad     int    `json:"-"`              // lines that were not records
	FirstTS int64  `json:"-"`              // timestamp of the first record seen, -1 none
}

// Gap is a run of missing records.
type Gap struct {
	After   uint64 `json:"after"`   // the last record seen before it
	Missing int    `json:"missing"` // how many
}

// NewWindow starts a window after the record numbered start.
func NewWindow(start uint64) *Window {
	return &Window{Start: start, Next: start + 1, FirstTS: -1}
}

// Add accounts for one record and reports whether it belongs to the window (records
// before Start, which a reader may replay, do not).
func (w *Window) Add(r Record) bool {
	if r.Seq < w.Next {
		return false
	}
	if r.Seq > w.Next {
		n := int(r.Seq - w.Next)
		w.Lost += n
		if len(w.Gaps) < 16 {
			w.Gaps = append(w.Gaps, Gap{After: w.Next - 1, Missing: n})
		}
	}
	if w.FirstTS < 0 {
		w.FirstTS = r.TS
	}
	w.Records++
	w.Next = r.Seq + 1
	return true
}

// Last is the sequence number of the newest record seen (Start when none).
func (w *Window) Last() uint64 { return w.Next - 1 }
