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

// Result is the canary's line: the same handovers measured twice, once with a
// kernel-thread writer and once with a consumer (a user task copying inside a syscall,
// as a block daemon does).
type Result struct {
	Local      int    `json:"local"`      // stale kmap_local_page handovers, kernel-thread writer
	Kmap       int    `json:"kmap"`       // stale kmap handovers, kernel-thread writer (should be 0)
	UserLocal  int    `json:"user_local"` // stale kmap_local_page handovers, consumer writer
	UserKmap   int    `json:"user_kmap"`  // stale kmap handovers, consumer writer (should be 0)
	Iterations int    `json:"iterations"` // per kind and writer
	Highmem    int    `json:"highmem"`    // of 16 test pages, how many were HIGHMEM
	TTBR0PAN   bool   `json:"ttbr0_pan"`  // the kernel has CONFIG_CPU_TTBR0_PAN
	State      string `json:"state"`      // Positive, Negative or NoHighmem
	Reason     string `json:"reason,omitempty"`
}

// States.
const (
	Positive  = "positive"   // the bug class shows here, to a consumer
	Negative  = "negative"   // HIGHMEM, but no consumer saw a stale mapping: clean would mean nothing
	NoHighmem = "no-highmem" // no HIGHMEM: the bug class cannot exist here
)

// KthreadOnly is the reason given when only the kernel-thread writer saw stale
// mappings. A TTBCR write is no TLB maintenance on a real CPU; under QEMU's TCG it
// flushes the whole TLB of an LPAE CPU (docs/emulation.md).
const KthreadOnly = "stale mappings visible to kernel threads only: user access flushes this CPU's TLB"

var lineRe = regexp.MustCompile(`kmodlab-canary: local=(\d+) kmap=(\d+) of (\d+) highmem=(\d+) cpus=\d+,\d+ user_local=(\d+) user_kmap=(\d+) ttbr0_pan=([01])`)

var failRe = regexp.MustCompile(`kmodlab-canary: ([a-z -]+ run failed: -?\d+)`)

// Parse finds the canary's last result in kernel log text and judges it: positive
// needs the consumer writer to have seen a stale mapping.
func Parse(log string) (*Result, error) {
	m := lineRe.FindAllStringSubmatch(log, -1)
	if m == nil {
		if f := failRe.FindAllStringSubmatch(log, -1); f != nil {
			return nil, fmt.Errorf("canary: %s", f[len(f)-1][1])
		}
		return nil, fmt.Errorf("no kmodlab-canary line in the kernel log")
	}
	last := m[len(m)-1]
	n := func(i int) int { v, _ := strconv.Atoi(last[i]); return v }
	r := &Result{Local: n(1), Kmap: n(2), Iterations: n(3), Highmem: n(4),
		UserLocal: n(5), UserKmap: n(6), TTBR0PAN: last[7] == "1"}
	switch {
	case r.Highmem == 0:
		r.State = NoHighmem
	case r.Iterations == 0:
		r.State = Negative
		r.Reason = "one CPU online: no handover to another CPU to measure"
	case r.UserLocal > 0:
		r.State = Positive
	case r.Local > 0:
		r.State = Negative
		r.Reason = KthreadOnly
		if r.TTBR0PAN {
			r.Reason += " under TCG (CPU_TTBR0_PAN)"
		}
	default:
		r.State = Negative
		r.Reason = "no stale mapping seen by any writer"
	}
	return r, nil
}

// Detail is the result in one line for the evidence.
func (r *Result) Detail() string {
	d := fmt.Sprintf("stale %d/%d to a consumer via kmap_local_page, %d/%d via kmap; kernel thread %d/%d, %d/%d",
		r.UserLocal, r.Iterations, r.UserKmap, r.Iterations, r.Local, r.Iterations, r.Kmap, r.Iterations)
	if r.Reason != "" {
		d = r.Reason + "; " + d
	}
	return d
}
