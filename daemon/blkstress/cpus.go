// Where blkstress's threads run: the CPU list and pinning to it.

package main

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/kmodlab/kmodlab/daemon/daemoncpu"

	"golang.org/x/sys/unix"
)

// pinCPUs is the CPU list threads are pinned to, round robin.
var pinCPUs []int

// pin locks the calling goroutine to an OS thread on the t-th CPU of the list. Keeping
// the daemon's CPU free of other processes matters: a switch between two processes
// flushes an emulated CPU's whole TLB and hides stale mappings.
func pin(t int) int {
	runtime.LockOSThread()
	cpu := pinCPUs[t%len(pinCPUs)]
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
	return cpu
}

// eachThread runs fn on s.o.threads pinned threads and returns the first error.
func eachThread(s *state, fn func(t, cpu int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, s.o.threads)
	for t := 0; t < s.o.threads; t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			if err := fn(t, pin(t)); err != nil {
				errs <- err
			}
		}(t)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// parseCPUs reads "0-2,4"; empty means the CPUs of our affinity mask (isolcpus= ones
// are not in it) without the last online CPU, or CPU 0 alone.
func parseCPUs(spec string, n int) ([]int, error) {
	if spec == "" {
		return daemoncpu.Others(), nil
	}
	var out []int
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: not a CPU number", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q: not a CPU range", part)
			}
		}
		for c := a; c <= b; c++ {
			if c >= 1024 {
				return nil, fmt.Errorf("CPU %d: out of range", c)
			}
			out = append(out, c)
		}
	}
	return out, nil
}
