// Package canary is a per-target health check: a small kernel module (src/) that
// measures whether the machine can show a CPU-local HIGHMEM mapping going stale on
// another CPU at all (docs/emulation.md). If a HIGHMEM target cannot, a clean result
// there proves nothing, and the lab says CANNOT-DETECT instead.
package canary

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// Module is the canary module's name (kmodlab_canary.ko).
const Module = "kmodlab_canary"

//go:embed src/Kbuild src/kmodlab_canary.c
var src embed.FS

// Extract writes the canary module's sources into dir.
func Extract(dir string) error {
	return fs.WalkDir(src, "src", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := src.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644)
	})
}

// Result is the canary's line.
type Result struct {
	Local      int    `json:"local"`      // stale kmap_local_page handovers
	Kmap       int    `json:"kmap"`       // stale kmap handovers (should be 0)
	Iterations int    `json:"iterations"` // per kind
	Highmem    int    `json:"highmem"`    // of 16 test pages, how many were HIGHMEM
	State      string `json:"state"`      // Positive, Negative or NoHighmem
}

// States.
const (
	Positive  = "positive"   // the bug class shows here
	Negative  = "negative"   // HIGHMEM, but no stale mapping seen: clean would mean nothing
	NoHighmem = "no-highmem" // no HIGHMEM: the bug class cannot exist here
)

var lineRe = regexp.MustCompile(`kmodlab-canary: local=(\d+) kmap=(\d+) of (\d+) highmem=(\d+)`)

// Parse finds the canary's result in kernel log text.
func Parse(log string) (*Result, error) {
	m := lineRe.FindAllStringSubmatch(log, -1)
	if m == nil {
		return nil, fmt.Errorf("no kmodlab-canary line in the kernel log")
	}
	last := m[len(m)-1]
	n := func(i int) int { v, _ := strconv.Atoi(last[i]); return v }
	r := &Result{Local: n(1), Kmap: n(2), Iterations: n(3), Highmem: n(4)}
	switch {
	case r.Highmem == 0:
		r.State = NoHighmem
	case r.Local > 0:
		r.State = Positive
	default:
		r.State = Negative
	}
	return r, nil
}
