package main

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kmodlab/kmodlab/daemon/daemoncpu"
	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

// The serving child: one process that creates a disk and serves it adversarially, so
// the parent can kill it at any point. It talks to the parent in lines on stdout:
//
//	INDEX <n>               the disk it serves
//	OPS <total>             ioctl calls so far (every 100 ms, and at exit)
//	CLOSED <ms>             (kind close) it closed its control fd, <ms> into a copy
//	GOT <xid>               (kind stall-after-get) it holds a request and will not serve on
//	V <invariant>\t<detail> a violated invariant
//	NOTE <text>             something the parent should report (no userfaultfd, …)
//
// SIGUSR1 makes it SHUTDOWN the disk (it then drains and exits); SIGTERM too. SIGUSR2
// closes the control fd under the serving threads (dup2 of /dev/null over it): the
// kernel removes the disk once the ioctls in flight return, and the threads exit.
//
// Its kind (-kind) says how it serves:
//
//	adversarial      the random misbehaviour below, with a userfaultfd staller
//	protnone         first io_timeout+1 s: every thread loops GET_REQUEST with a
//	                 PROT_NONE buffer (a write's copy always faults on the daemon's side,
//	                 so the request goes QUEUED -> BUSY -> QUEUED for ever) and answers
//	                 nothing; then adversarial
//	stall            each thread holds the first requests it gets for io_timeout+0.5 s
//	                 without answering (SENT until the timeout), then adversarial
//	race             adversarial, and a racer thread fires COMPLETEs that can never be
//	                 accepted at the xids GET_REQUEST is about to hand out: with
//	                 busy_delay_us they name requests being copied
//	close            serve honestly, never sleeping in the kernel (NOWAIT), and after a
//	                 random 150-450 ms close the control fd while a thread is inside a
//	                 copy (closeWhileBusy); say CLOSED
//	stall-after-get  serve until a GET_REQUEST returns, say GOT and serve no more
//	protnone-loop    loop GET_REQUEST with a PROT_NONE buffer for ever, answer nothing
type child struct {
	f      *fuzzer
	fd     int
	rng    *rand.Rand
	out    *bufio.Writer
	outMu  sync.Mutex
	mu     sync.Mutex
	handed map[uint64]bool // xids GET_REQUEST returned
	done   map[uint64]bool // xids a COMPLETE succeeded on
	maxXid uint64
	store  map[uint64][]byte // 4 KiB blocks by byte offset / 4096
	size   uint64
	bad    *badPointers
	stalls int
	// serveMu: the second serving thread holds it shared from its GET_REQUEST until it
	// has recorded the xid; the racer holds it while guessing xids, so an xid it
	// completes was either recorded as handed out or never handed out at all.
	serveMu sync.RWMutex
	kind    string
	until   time.Time // protnone, stall: end of the hostile phase
	closed  atomic.Bool
	gotOnce sync.Once
	// inside: per serving thread of the close kind, when its current ioctl began
	// (UnixNano; 0: not in one).
	inside [2]atomic.Int64
}

// Serving kinds (-kind).
const (
	kindAdversarial = "adversarial"
	kindProtnone    = "protnone"
	kindStall       = "stall"
	kindRace        = "race"
	kindClose       = "close"
	kindStallGet    = "stall-after-get"
	kindProtLoop    = "protnone-loop"
)

var childKinds = map[string]bool{kindAdversarial: true, kindProtnone: true, kindStall: true, kindRace: true,
	kindClose: true, kindStallGet: true, kindProtLoop: true}

// pinOthers keeps the calling (locked) thread off the daemon's CPU: the threads that race
// a serving thread's copy (raceBusy, race, closeWhileBusy) must run while it copies.
func pinOthers() {
	var set unix.CPUSet
	for _, c := range daemoncpu.Others() {
		set.Set(c)
	}
	unix.SchedSetaffinity(0, &set)
}

// setIOFlusher makes the calling (locked) thread an I/O flusher, as userblkd's workers
// are: the flag is per thread, and a serving thread must not wait in reclaim on
// write-back to the disk it serves.
func setIOFlusher() error { return unix.Prctl(57 /* PR_SET_IO_FLUSHER */, 1, 0, 0, 0) }

func (c *child) say(format string, args ...any) {
	c.outMu.Lock()
	fmt.Fprintf(c.out, format+"\n", args...)
	c.out.Flush()
	c.outMu.Unlock()
}

func (c *child) violation(inv, detail string) { c.say("V %s\t%s", inv, detail) }

func runChild(f *fuzzer, mode uint32, size uint64, ioTimeout uint32, kind string) int {
	c := &child{f: f, rng: rand.New(rand.NewSource(f.seed)), out: bufio.NewWriter(os.Stdout),
		handed: map[uint64]bool{}, done: map[uint64]bool{}, store: map[uint64][]byte{}, size: size, kind: kind}
	var err error
	if c.bad, err = newBadPointers(); err != nil {
		c.say("NOTE bad pointers: %v", err)
		return 2
	}
	c.fd, err = unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		c.say("NOTE open %s: %v", f.ctl, err)
		return 2
	}
	cr := uapi.Create{Size: size, MapMode: mode, IOTimeout: ioTimeout}
	if err := call(f, c.fd, uapi.IocCreate, &cr); err != nil {
		c.say("NOTE CREATE: %v", err)
		return 2
	}
	c.say("INDEX %d", cr.Index)
	switch kind {
	case kindProtnone:
		c.until = time.Now().Add(time.Duration(ioTimeout)*time.Second + time.Second)
	case kindStall:
		c.until = time.Now().Add(time.Duration(ioTimeout)*time.Second + 500*time.Millisecond)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	go func() {
		<-sigs
		f.ioctl(c.fd, uapi.IocShutdown, 0)
	}()
	closeSig := make(chan os.Signal, 1)
	signal.Notify(closeSig, syscall.SIGUSR2)
	go func() {
		<-closeSig
		c.closeUnder()
	}()
	go func() {
		for {
			c.say("OPS %d", f.ops.Load())
			time.Sleep(100 * time.Millisecond)
		}
	}()
	threads := 2
	if kind == kindProtnone || kind == kindProtLoop {
		threads = 3
	}
	var flusherOnce sync.Once
	var wg sync.WaitGroup
	stopRace := make(chan struct{})
	if kind == kindRace {
		go c.raceBusy(rand.New(rand.NewSource(c.rng.Int63())), stopRace)
	}
	if kind == kindClose {
		go c.closeWhileBusy(rand.New(rand.NewSource(c.rng.Int63())))
	}
	for i := 0; i < threads; i++ {
		wg.Add(1)
		seed := c.rng.Int63()
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			// On the daemon's CPU, as userblkd: the guests isolate it, so without this
			// every thread of both processes shares the others (on x86_64 one CPU), and a
			// copy held open by busy_delay_us holds that CPU too, so that nothing could
			// race it: the interleavings were never reached there.
			if err := daemoncpu.Pin(daemoncpu.Daemon()); err != nil {
				flusherOnce.Do(func() { c.say("NOTE pin a serving thread to the daemon's CPU: %v", err) })
			}
			if err := setIOFlusher(); err != nil {
				flusherOnce.Do(func() { c.say("NOTE PR_SET_IO_FLUSHER on a serving thread: %v", err) })
			}
			switch kind {
			case kindProtLoop:
				c.protnoneLoop(time.Time{})
			case kindStallGet:
				c.stallAfterGet()
			case kindClose:
				c.serveNowait(i)
			default:
				c.serve(rand.New(rand.NewSource(seed)), i == 0)
			}
		}()
	}
	wg.Wait()
	close(stopRace)
	c.say("OPS %d", f.ops.Load())
	unix.Close(c.fd)
	return 0
}

// closeUnder closes the control fd while the serving threads may be inside ioctls of
// it: dup2 of /dev/null over the number, so no later open can reuse it and every later
// ioctl on it fails with ENOTTY.
func (c *child) closeUnder() {
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		c.say("NOTE open /dev/null: %v", err)
		return
	}
	c.closed.Store(true)
	unix.Dup3(null, c.fd, unix.O_CLOEXEC)
	unix.Close(null)
}

// gone says whether an ioctl error means the control fd is no longer ours.
func (c *child) gone(err error) bool {
	return c.closed.Load() && (err == unix.ENOTTY || err == unix.EBADF || err == unix.EINVAL)
}
