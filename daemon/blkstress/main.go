// Command blkstress writes self-describing blocks to a block device and reads them back,
// from several threads pinned to different CPUs, and reports every block whose bytes are
// not what was written, as JSON. Every 4 KiB block carries a header (magic, block number,
// generation, crc of the payload), so a wrong block says which block it actually holds.
//
// Modes:
//
//	odirect  O_DIRECT reads and writes of 1..16 blocks into a rotating pool of buffers
//	         (user pages: on 32-bit machines these are usually HIGHMEM)
//	fs       mke2fs, mount, files of patterned blocks, sync, drop caches, read back:
//	         the original report's scenario (file page cache lives in HIGHMEM)
//
// While it runs it prints a progress line (stressreport.Progress) to stderr every
// -progress interval. SIGTERM or SIGINT ends the run early but cleanly: the threads
// finish the I/O in hand (fs: the file in hand), and the report is written as usual.
// The lab relies on this to stop a step once it has enough evidence.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kmodlab/kmodlab/stressreport"

	"golang.org/x/sys/unix"
)

const (
	blockSize = 4096
	magic     = 0x6b6d6c62 // "kmlb"
	hdrSize   = 24
	poolSize  = 64 // buffers per thread: reads land in many different pages
	maxRun    = 16 // blocks per I/O at most
)

// Mismatch is one block that did not read back as written.
type Mismatch = stressreport.Mismatch

type opts struct {
	dev      string
	mode     string
	duration time.Duration
	maxBytes int64
	threads  int
	seed     int64
	span     int64
	mnt      string
	files    int
	cpus     []int
	progress time.Duration
}

func main() {
	var o opts
	var out string
	flag.StringVar(&o.dev, "dev", "/dev/userblk0", "block device")
	flag.StringVar(&o.mode, "mode", "odirect", "odirect or fs")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "stop after this long")
	flag.Int64Var(&o.maxBytes, "bytes", 0, "stop after this many bytes read+written (0: no limit)")
	flag.IntVar(&o.threads, "threads", 2, "threads, pinned to CPUs round robin")
	flag.Int64Var(&o.seed, "seed", 1, "pattern and schedule seed: the same seed replays the same I/O")
	flag.Int64Var(&o.span, "span", 16<<20, "bytes of the device to use (odirect)")
	flag.StringVar(&o.mnt, "mnt", "/mnt/blkstress", "mount point (fs)")
	flag.IntVar(&o.files, "files", 8, "files per thread (fs)")
	flag.StringVar(&out, "json", "", "write the report here (default stdout)")
	flag.DurationVar(&o.progress, "progress", 250*time.Millisecond, "print a progress line to stderr this often (0: never)")
	cpus := flag.String("cpus", "", "CPUs to pin threads to, e.g. 0-2 (default: those we may run on, but the last online CPU, which userblkd keeps for itself)")
	flag.Parse()
	var err error
	if o.cpus, err = parseCPUs(*cpus, runtime.NumCPU()); err != nil {
		fmt.Fprintln(os.Stderr, "blkstress: -cpus:", err)
		os.Exit(2)
	}
	// SIGTERM/SIGINT: stop early, but verify what is in hand and write the report.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; stopRequested.Store(true) }()
	rep, err := run(o)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	if out == "" {
		os.Stdout.Write(append(data, '\n'))
	} else if werr := os.WriteFile(out, append(data, '\n'), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "blkstress:", werr)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "blkstress: %s %.1fs reads=%d writes=%d ioerrors=%d mismatches=%d\n",
		o.mode, rep.Seconds, rep.Reads, rep.Writes, rep.IOErrors, rep.Mismatches)
	if err != nil {
		fmt.Fprintln(os.Stderr, "blkstress:", err)
		os.Exit(2)
	}
}

// stopRequested is set by SIGTERM or SIGINT.
var stopRequested atomic.Bool

// state collects results from all threads.
type state struct {
	mu      sync.Mutex
	rep     *stressreport.Report
	details []Mismatch
	start   time.Time
	bytes   int64
	o       opts
}

func (s *state) add(w, r, bw, br, ioerr int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Writes += w
	s.rep.Reads += r
	s.rep.BytesWritten += bw
	s.rep.BytesRead += br
	s.rep.IOErrors += ioerr
}

func (s *state) mismatch(m Mismatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.ElapsedMS = time.Since(s.start).Milliseconds()
	if s.rep.Mismatches == 0 {
		s.rep.FirstMS = m.ElapsedMS
	}
	s.rep.Mismatches++
	if len(s.details) < 50 {
		s.details = append(s.details, m)
	}
}

func (s *state) done() bool {
	if stopRequested.Load() || time.Since(s.start) >= s.o.duration {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.o.maxBytes > 0 && s.rep.BytesRead+s.rep.BytesWritten >= s.o.maxBytes
}

// progress is the counts so far.
func (s *state) progress() stressreport.Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return stressreport.Progress{Reads: s.rep.Reads, Writes: s.rep.Writes, IOErrors: s.rep.IOErrors, Mismatches: s.rep.Mismatches}
}

// report prints a progress line now and every interval until the returned func is
// called, which prints the last one.
func (s *state) report(every time.Duration) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			fmt.Fprintln(os.Stderr, s.progress().Line())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

func run(o opts) (*stressreport.Report, error) {
	rep := &stressreport.Report{Tool: "blkstress", Mode: o.mode, Device: o.dev, Seed: o.seed, Threads: o.threads, FirstMS: -1}
	if o.threads < 1 {
		return rep, fmt.Errorf("-threads %d: want at least 1", o.threads)
	}
	s := &state{rep: rep, start: time.Now(), o: o}
	pinCPUs = o.cpus
	if o.progress > 0 {
		stop := s.report(o.progress)
		defer stop()
	}
	var err error
	switch o.mode {
	case "odirect":
		err = runODirect(s)
	case "fs":
		err = runFS(s)
	default:
		err = fmt.Errorf("-mode %q: want odirect or fs", o.mode)
	}
	rep.Seconds = time.Since(s.start).Seconds()
	if s.details == nil {
		s.details = []Mismatch{}
	}
	rep.Details, _ = json.Marshal(s.details)
	return rep, err
}

// ioError says whether err is the device failing I/O (the daemon answered with an
// error, or went away), as opposed to a problem of the tool itself.
func ioError(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EROFS)
}
