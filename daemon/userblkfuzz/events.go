package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"github.com/kmodlab/kmodlab/stressreport"
)

// readEvents reads the module's event counters; nil if it has none.
func readEvents() map[string]int64 {
	out := map[string]int64{}
	for _, n := range uapi.EventNames {
		b, err := os.ReadFile(filepath.Join(uapi.EventsDir, n))
		if err != nil {
			return nil
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil
		}
		out[n] = v
	}
	return out
}

// interleavings is what the module counted since the fuzzer started.
func (f *fuzzer) interleavings() map[string]int64 {
	now := readEvents()
	if now == nil || f.events0 == nil {
		return nil
	}
	out := map[string]int64{}
	for n, v := range now {
		out[n] = v - f.events0[n]
	}
	return out
}

const busyDelayParam = "/sys/module/userblk/parameters/busy_delay_us"

// setBusyDelay sets the module's busy_delay_us (testing only), if it has one.
func setBusyDelay(us int) {
	os.WriteFile(busyDelayParam, []byte(strconv.Itoa(us)), 0o644)
}

// report prints the interleavings reached (noting those reached fewer than min times)
// and writes the stress report.
func (f *fuzzer) report(min int64) error {
	inter := f.interleavings()
	if inter != nil {
		var parts []string
		for _, n := range uapi.EventNames {
			parts = append(parts, fmt.Sprintf("%s=%d", n, inter[n]))
		}
		fmt.Fprintf(os.Stderr, "userblkfuzz: interleavings: %s\n", strings.Join(parts, " "))
		if min > 0 {
			r := stressreport.Report{Interleavings: inter}
			if miss := r.Unreached(stressreport.FuzzInterleavings, min); len(miss) > 0 {
				f.note(fmt.Sprintf("interleavings reached fewer than %d times: %s", min, strings.Join(miss, ", ")))
			}
		}
	}
	if f.jsonPath == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := stressreport.Report{Tool: "userblkfuzz", Mode: f.modeName, Device: f.ctl, Seed: f.seed,
		Seconds: time.Since(f.start).Seconds(), Reads: f.reads.Load(), Writes: f.writes.Load(),
		Ops: f.ops.Load(), Mismatches: len(f.violations), FirstMS: -1, Errors: f.notes, Interleavings: inter}
	// io_errors stays 0: every I/O error here is one the fuzzer caused on purpose (a
	// failed COMPLETE, a request left to time out, the server killed or shut down), and
	// the lab reads io_errors as data that should have been verified and was not. The
	// count is on stderr; a bio that never ends is a violation of its own.
	if len(f.violations) > 0 {
		r.FirstMS = f.violations[0].ElapsedMS
		d, err := json.Marshal(f.violations)
		if err != nil {
			return err
		}
		r.Details = d
	}
	return r.Write(f.jsonPath)
}
