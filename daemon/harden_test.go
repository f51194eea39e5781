package main

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Every serving thread is an I/O flusher, not only the one main hardened: the flag is
// per thread, and a worker without it can deadlock in reclaim on its own disk.
func TestWorkerThreadsAreIOFlushers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE")
	}
	get := func() int {
		v, err := unix.PrctlRetInt(prGetIOFlusher, 0, 0, 0, 0)
		if err != nil {
			return -1
		}
		return v
	}
	if get() < 0 {
		t.Skip("this kernel has no PR_GET_IO_FLUSHER")
	}
	res := make(chan [2]int)
	go func() {
		runtime.LockOSThread() // a fresh thread, so the mark cannot come from elsewhere
		defer runtime.UnlockOSThread()
		before := get()
		unix.Prctl(prSetIOFlusher, 0, 0, 0, 0)
		workerThread(-2) // -2: do not pin
		res <- [2]int{before, get()}
	}()
	r := <-res
	if r[1] != 1 {
		t.Errorf("a worker thread is not an I/O flusher (PR_GET_IO_FLUSHER = %d)", r[1])
	}
}
