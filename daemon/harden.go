package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// prSetIOFlusher is PR_SET_IO_FLUSHER (Linux 5.6).
const prSetIOFlusher = 57

// prGetIOFlusher is PR_GET_IO_FLUSHER.
const prGetIOFlusher = 58

// harden keeps the daemon from waiting on its own disk: PR_SET_IO_FLUSHER makes its
// allocations avoid write-back and exempts it from dirty throttling, and mlockall keeps
// its pages (the request buffers, the memory store) from being paged out, so serving a
// request never needs a page-in or a write-back through the disk it serves. Failures
// are reported, not fatal (an unprivileged test run has neither right).
//
// PR_SET_IO_FLUSHER is a property of the calling thread, not of the process: harden
// sets it on the thread it runs on, and every worker must call ioFlusher on its own
// locked OS thread.
func harden() []error {
	var errs []error
	if err := ioFlusher(); err != nil {
		errs = append(errs, err)
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		errs = append(errs, fmt.Errorf("mlockall: %w", err))
	}
	for _, err := range errs {
		fmt.Fprintln(os.Stderr, "userblkd: warning:", err)
	}
	return errs
}

// ioFlusher marks the calling OS thread as an I/O flusher (PR_SET_IO_FLUSHER). The
// caller has locked its goroutine to the thread.
func ioFlusher() error {
	if err := unix.Prctl(prSetIOFlusher, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_IO_FLUSHER: %w", err)
	}
	return nil
}
