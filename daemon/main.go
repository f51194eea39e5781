// Command userblkd is the userspace half of userblk.ko: it creates /dev/userblkN through
// /dev/userblk-ctl and serves every segment the kernel hands it, from memory or from a
// sparse backing file. Single-threaded by default, like the original report's daemon.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/kmodlab/kmodlab/daemon/daemoncpu"
	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

func main() {
	var (
		ctl     = flag.String("ctl", "/dev/"+uapi.CtlName, "control device")
		size    = flag.String("size", "64M", "disk size (K, M, G suffixes; a multiple of 4096)")
		mode    = flag.String("mode", "default", "map mode for this disk: default (the module parameter), atomic, local, kmap, copier")
		backing = flag.String("backing", "mem", "mem, or a file to keep the data in (created sparse)")
		workers = flag.Int("workers", 1, "threads serving requests")
		logFile = flag.String("log", "", "write one line per request (the daemon's crc view) to this file")
		poll    = flag.Bool("poll", false, "busy-poll for requests instead of sleeping in the kernel (keeps the serving CPU awake)")
		cpu     = flag.Int("cpu", -1, "pin workers to this CPU (default -1: the last CPU, which blkstress leaves free; -2: no pinning)")
		timeout = flag.Uint("io-timeout", 0, "seconds a segment may wait for this daemon before the kernel fails it with EIO (0: the module's io_timeout)")
	)
	flag.Parse()
	if *cpu != -2 && os.Getenv("USERBLKD_PINNED") == "" {
		// Pin the whole process, every runtime thread included, before it has any: a
		// garbage-collector thread stuck behind a busy-waiting submitter on another CPU
		// would stall the worker (and so the submitter) until it times out.
		if err := reexecPinned(*cpu); err != nil {
			fmt.Fprintln(os.Stderr, "userblkd:", err)
			os.Exit(1)
		}
	}
	harden()
	if err := run(*ctl, *size, *mode, *backing, *workers, *logFile, *poll, *cpu, uint32(*timeout)); err != nil {
		fmt.Fprintln(os.Stderr, "userblkd:", err)
		os.Exit(1)
	}
}

func run(ctl, sizeArg, mode, backing string, workers int, logFile string, poll bool, cpu int, ioTimeout uint32) error {
	size, err := parseSize(sizeArg)
	if err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	m, ok := uapi.ModeNames[mode]
	if !ok {
		return fmt.Errorf("-mode %q: want default, atomic, local, kmap or copier", mode)
	}
	if ioTimeout > uapi.MaxIOTimeout {
		return fmt.Errorf("-io-timeout %d: at most %d seconds", ioTimeout, uapi.MaxIOTimeout)
	}
	if workers < 1 {
		return fmt.Errorf("-workers %d: want at least 1", workers)
	}
	var store Backend
	if backing == "mem" {
		store = newMemStore(size)
	} else {
		f, err := openBacking(backing, size)
		if err != nil {
			return err
		}
		defer f.Close()
		store = f
	}
	var log io.Writer
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		log = f
	}
	fd, err := syscall.Open(ctl, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w (is userblk.ko loaded?)", ctl, err)
	}
	dev := &ctlDevice{fd: fd}
	idx, err := dev.create(uint64(size), m, ioTimeout)
	if err != nil {
		syscall.Close(fd)
		if errors.Is(err, unix.EPERM) && uapi.UnsafeMode(m) {
			return fmt.Errorf("%w (mode %s is one of the bug modes: load userblk.ko with unsafe_modes=1 to allow it)", err, mode)
		}
		return err
	}
	fmt.Printf("userblkd: serving /dev/userblk%d (%d bytes, mode %s, %d worker(s))\n", idx, size, mode, workers)

	srv := &Server{Dev: dev, Store: store, Log: log, Poll: poll}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go handleSignals(sigs, func() { dev.shutdown() }, os.Exit)
	err = serveWorkers(srv, workers, cpu, func() { dev.shutdown() })
	if serr := store.Sync(); serr != nil && err == nil {
		err = serr
	}
	syscall.Close(fd) // removes the disk
	fmt.Printf("userblkd: done: %d reads, %d writes, %d errors\n", srv.Stats.Reads.Load(), srv.Stats.Writes.Load(), srv.Stats.Errors.Load())
	return err
}

// serveWorkers runs workers serving threads (see workerThread) until the device shuts
// down; the first error shuts it down for the others and is returned.
func serveWorkers(srv *Server, workers, cpu int, shutdown func()) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workerThread(cpu)
			if err := srv.Serve(); err != nil {
				errs <- err
				shutdown()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	n *= mult
	if n%4096 != 0 {
		return 0, fmt.Errorf("%d is not a multiple of 4096", n)
	}
	return n, nil
}

// handleSignals: the first signal shuts the disk down cleanly (wakes every worker's
// GET_REQUEST with ESHUTDOWN and fails pending requests); a second one exits at once
// (closing the fd makes the kernel fail what is pending and remove the disk).
func handleSignals(sigs <-chan os.Signal, shutdown func(), exit func(int)) {
	s := <-sigs
	fmt.Printf("userblkd: %s: shutting down (again to exit at once)\n", s)
	shutdown()
	s = <-sigs
	fmt.Printf("userblkd: %s: exiting now\n", s)
	exit(130)
}

// openBacking opens (or creates, 0600, sparse) the backing file and locks it against a
// second daemon. An existing file keeps its contents and size: it is only extended when
// shorter than the disk, never truncated.
func openBacking(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: another daemon serves it (locked)", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() < size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// reexecPinned restarts this program with the affinity set: children inherit it, so
// every thread of the new process runs on that CPU only.
func reexecPinned(cpu int) error {
	runtime.LockOSThread()
	pinTo(cpu)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, append(os.Environ(), "USERBLKD_PINNED=1"))
}

// workerThread readies the calling goroutine to serve: its own OS thread, pinned, and
// marked an I/O flusher (per thread: main's harden() marked only the thread it ran on).
func workerThread(cpu int) {
	runtime.LockOSThread()
	pinTo(cpu)
	if err := ioFlusher(); err != nil {
		fmt.Fprintln(os.Stderr, "userblkd: warning:", err)
	}
}

// pinTo keeps the calling thread on one CPU: by default the daemon's (see
// daemon/daemoncpu), which blkstress leaves free.
func pinTo(cpu int) {
	if cpu == -2 {
		return
	}
	if cpu == -1 {
		cpu = daemoncpu.Daemon()
	}
	if err := daemoncpu.Pin(cpu); err != nil {
		fmt.Fprintf(os.Stderr, "userblkd: pin to CPU %d: %v\n", cpu, err)
	}
}
