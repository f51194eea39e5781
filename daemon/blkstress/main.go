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
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/kmodlab/kmodlab/daemon/daemoncpu"
	"github.com/kmodlab/kmodlab/stressreport"
	"hash/crc32"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// fill writes block's generation gen into b (one block).
func fill(b []byte, seed, block int64, gen uint64) {
	r := rand.New(rand.NewSource(seed ^ block*0x9e3779b1 ^ int64(gen)<<32))
	r.Read(b[hdrSize:])
	binary.LittleEndian.PutUint32(b[0:], magic)
	binary.LittleEndian.PutUint64(b[4:], uint64(block))
	binary.LittleEndian.PutUint64(b[12:], gen)
	binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b[hdrSize:]))
}

// describe says what a block's bytes hold.
func describe(b []byte) string {
	if binary.LittleEndian.Uint32(b) == magic {
		ok := binary.LittleEndian.Uint32(b[20:]) == crc32.ChecksumIEEE(b[hdrSize:])
		s := fmt.Sprintf("block %d gen %d", binary.LittleEndian.Uint64(b[4:]), binary.LittleEndian.Uint64(b[12:]))
		if !ok {
			s += " (torn: payload crc wrong)"
		}
		return s
	}
	for _, c := range b {
		if c != 0 {
			return "garbage"
		}
	}
	return "zeros"
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

// unknownGen marks a block whose last write failed: its contents are not checked until
// it is written again.
const unknownGen = ^uint64(0)

// check compares one read block with what was last written there.
func check(s *state, got []byte, path string, block, off int64, gen uint64, t, cpu int) {
	if gen == unknownGen {
		return
	}
	want := make([]byte, blockSize)
	if gen == 0 {
		want = want[:blockSize] // never written: zeros
	} else {
		fill(want, s.o.seed, block, gen)
	}
	if string(got) == string(want) {
		return
	}
	s.mismatch(Mismatch{Path: path, Block: block, Offset: off, WantGen: gen,
		WantCRC: fmt.Sprintf("%08x", crc32.ChecksumIEEE(want)), SeenCRC: fmt.Sprintf("%08x", crc32.ChecksumIEEE(got)),
		Holds: describe(got), Thread: t, CPU: cpu})
}

// pool returns n page-aligned buffers of size bytes (anonymous memory, fresh pages).
func pool(n, size int) ([][]byte, error) {
	mem, err := unix.Mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = mem[i*size : (i+1)*size]
	}
	return out, nil
}

func runODirect(s *state) error {
	fd, err := unix.Open(s.o.dev, unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("open %s O_DIRECT: %w", s.o.dev, err)
	}
	defer unix.Close(fd)
	size, err := unix.Seek(fd, 0, 2)
	if err != nil {
		return err
	}
	span := min(s.o.span, size) / blockSize
	per := span / int64(s.o.threads)
	if per < maxRun {
		return fmt.Errorf("device too small: %d blocks for %d threads", span, s.o.threads)
	}
	return eachThread(s, func(t, cpu int) error {
		return odirectThread(s, fd, t, cpu, int64(t)*per, per)
	})
}

// odirectThread owns blocks [first, first+n): writes and reads only there.
func odirectThread(s *state, fd, t, cpu int, first, n int64) error {
	bufs, err := pool(poolSize, maxRun*blockSize)
	if err != nil {
		return err
	}
	gens := make([]uint64, n)
	r := rand.New(rand.NewSource(s.o.seed + int64(t)))
	next, failed := 0, 0
	ioerr := func(op string, n int, off int64, err error) error {
		s.add(0, 0, 0, 0, 1)
		if failed++; failed >= 100 {
			return fmt.Errorf("%s %d@%d: %w (100 I/O errors in a row: stopping)", op, n, off, err)
		}
		return nil
	}
	for !s.done() {
		run := int64(1 + r.Intn(maxRun))
		at := r.Int63n(n - run + 1)
		buf := bufs[next][:run*blockSize]
		next = (next + 1) % poolSize
		off := (first + at) * blockSize
		if r.Intn(3) == 0 {
			for i := int64(0); i < run; i++ {
				if gens[at+i] == unknownGen {
					gens[at+i] = 0
				}
				gens[at+i]++
				fill(buf[i*blockSize:(i+1)*blockSize], s.o.seed, first+at+i, gens[at+i])
			}
			if n, err := unix.Pwrite(fd, buf, off); err != nil || n != len(buf) {
				if err == nil {
					err = fmt.Errorf("short write: %d of %d bytes", n, len(buf))
				}
				// The block's contents are unknown now: a later read may see either.
				for i := int64(0); i < run; i++ {
					gens[at+i] = unknownGen
				}
				if err := ioerr("pwrite", len(buf), off, err); err != nil {
					return err
				}
				continue
			}
			failed = 0
			s.add(1, 0, int64(len(buf)), 0, 0)
			continue
		}
		if n, err := unix.Pread(fd, buf, off); err != nil || n != len(buf) {
			if err == nil {
				err = fmt.Errorf("short read: %d of %d bytes (device gone?)", n, len(buf))
			}
			if err := ioerr("pread", len(buf), off, err); err != nil {
				return err
			}
			continue
		}
		failed = 0
		s.add(0, 1, 0, int64(len(buf)), 0)
		for i := int64(0); i < run; i++ {
			check(s, buf[i*blockSize:(i+1)*blockSize], "", first+at+i, (first+at+i)*blockSize, gens[at+i], t, cpu)
		}
	}
	return nil
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

// runFS is the report's scenario: file data through the page cache, caches dropped,
// read again.
func runFS(s *state) error {
	if err := sh("mke2fs", "-q", "-F", "-b", "4096", s.o.dev); err != nil {
		return err
	}
	if err := os.MkdirAll(s.o.mnt, 0o755); err != nil {
		return err
	}
	if err := sh("mount", "-t", "ext2", s.o.dev, s.o.mnt); err != nil {
		return err
	}
	defer sh("umount", s.o.mnt)
	const fileBlocks = 64
	gens := make([][]uint64, s.o.threads*s.o.files)
	for i := range gens {
		gens[i] = make([]uint64, fileBlocks)
	}
	for round := 0; !s.done(); round++ {
		// Write phase: every thread rewrites its files.
		err := eachThread(s, func(t, cpu int) error {
			buf := make([]byte, fileBlocks*blockSize)
			for f := 0; f < s.o.files; f++ {
				id := t*s.o.files + f
				for b := 0; b < fileBlocks; b++ {
					if gens[id][b] == unknownGen {
						gens[id][b] = 0
					}
					gens[id][b]++
					fill(buf[b*blockSize:(b+1)*blockSize], s.o.seed, int64(id*fileBlocks+b), gens[id][b])
				}
				if err := writeSynced(filepath.Join(s.o.mnt, fmt.Sprintf("f%03d", id)), buf); err != nil {
					if !ioError(err) {
						return err
					}
					s.add(0, 0, 0, 0, 1)
					for b := range gens[id] {
						gens[id][b] = unknownGen
					}
					continue
				}
				s.add(1, 0, int64(len(buf)), 0, 0)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
			return fmt.Errorf("drop caches: %w", err)
		}
		// Read phase: each thread reads files another thread wrote.
		err = eachThread(s, func(t, cpu int) error {
			owner := (t + 1) % s.o.threads
			// A round is long under emulation (seconds): the end of the run (its
			// duration, SIGTERM) is honoured between files here, not only between rounds.
			for f := 0; f < s.o.files && !s.done(); f++ {
				id := owner*s.o.files + f
				name := filepath.Join(s.o.mnt, fmt.Sprintf("f%03d", id))
				data, err := os.ReadFile(name)
				if err != nil {
					if ioError(err) {
						s.add(0, 0, 0, 0, 1)
						continue
					}
					return err
				}
				s.add(0, 1, 0, int64(len(data)), 0)
				if len(data) != fileBlocks*blockSize {
					s.mismatch(Mismatch{Path: name, Holds: fmt.Sprintf("file of %d bytes", len(data)), Thread: t, CPU: cpu})
					continue
				}
				for b := 0; b < fileBlocks; b++ {
					check(s, data[b*blockSize:(b+1)*blockSize], name, int64(id*fileBlocks+b), int64(b*blockSize), gens[id][b], t, cpu)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writeSynced writes a file and waits for its write-back (fsync), so a write the device
// failed is counted as an I/O error, never mistaken later for data read back wrong.
func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ioError says whether err is the device failing I/O (the daemon answered with an
// error, or went away), as opposed to a problem of the tool itself.
func ioError(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EROFS)
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
