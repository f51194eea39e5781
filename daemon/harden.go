package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// prSetIOFlusher is PR_SET_IO_FLUSHER (Linux 5.6).
const prSetIOFlusher = 57

// harden keeps the daemon from waiting on its own disk: PR_SET_IO_FLUSHER makes its
// allocations avoid write-back and exempts it from dirty throttling, and mlockall keeps
// its pages (the request buffers, the memory store) from being paged out, so serving a
// request never needs a page-in or a write-back through the disk it serves. Failures
// are reported, not fatal (an unprivileged test run has neither right).
func harden() []error {
	var errs []error
	if err := unix.Prctl(prSetIOFlusher, 1, 0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("PR_SET_IO_FLUSHER: %w", err))
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		errs = append(errs, fmt.Errorf("mlockall: %w", err))
	}
	for _, err := range errs {
		fmt.Fprintln(os.Stderr, "userblkd: warning:", err)
	}
	return errs
}
