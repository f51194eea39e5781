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

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

// The serving child: one process that creates a disk and serves it adversarially, so
// the parent can kill it at any point. It talks to the parent in lines on stdout:
//
//	INDEX <n>               the disk it serves
//	OPS <total>             ioctl calls so far (every 100 ms, and at exit)
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
}

// Serving kinds (-kind).
const (
	kindAdversarial = "adversarial"
	kindProtnone    = "protnone"
	kindStall       = "stall"
	kindRace        = "race"
	kindStallGet    = "stall-after-get"
	kindProtLoop    = "protnone-loop"
)

var childKinds = map[string]bool{kindAdversarial: true, kindProtnone: true, kindStall: true, kindRace: true,
	kindStallGet: true, kindProtLoop: true}

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
	for i := 0; i < threads; i++ {
		wg.Add(1)
		seed := c.rng.Int63()
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			if err := setIOFlusher(); err != nil {
				flusherOnce.Do(func() { c.say("NOTE PR_SET_IO_FLUSHER on a serving thread: %v", err) })
			}
			switch kind {
			case kindProtLoop:
				c.protnoneLoop(time.Time{})
			case kindStallGet:
				c.stallAfterGet()
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

// protnoneLoop loops GET_REQUEST with a PROT_NONE buffer and answers nothing, until
// until (zero: until the disk goes): a write's copy out always faults on the daemon's
// side, so the kernel keeps handing the request back; a read's description works and
// the read is left SENT.
func (c *child) protnoneLoop(until time.Time) bool {
	for until.IsZero() || time.Now().Before(until) {
		r := uapi.Request{Buf: uint64(c.bad.unmapped), BufLen: uapi.MaxSegment}
		err := call(c.f, c.fd, uapi.IocGetRequest, &r)
		if err == unix.ESHUTDOWN || c.gone(err) {
			return false
		}
		if err == nil {
			c.record(&r)
		}
	}
	return true
}

// stallAfterGet serves nothing: once a GET_REQUEST returns, it says GOT (the parent
// then stops this process) and holds the request for ever.
func (c *child) stallAfterGet() {
	buf := alignedBuf(uapi.MaxSegment)
	for {
		r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment}
		err := call(c.f, c.fd, uapi.IocGetRequest, &r)
		if err == unix.ESHUTDOWN || c.gone(err) {
			return
		}
		if err == nil {
			c.record(&r)
			c.gotOnce.Do(func() { c.say("GOT %08x", r.Xid) })
			for !c.closed.Load() {
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
	}
}

// raceBusy fires COMPLETEs that the kernel can never accept (len 1: a read's must be
// its length, a write's 0) at the xids GET_REQUEST hands out next, so that with
// busy_delay_us some name a request while it is being copied (BUSY). Such a COMPLETE
// changes nothing; one that succeeds is a violation.
func (c *child) raceBusy(rng *rand.Rand, stop <-chan struct{}) {
	runtime.LockOSThread()
	for {
		select {
		case <-stop:
			return
		default:
		}
		c.mu.Lock()
		next := c.maxXid
		c.mu.Unlock()
		for x := next + 1; x <= next+3; x++ {
			try := uapi.Complete{Xid: x, Len: 1}
			err := call(c.f, c.fd, uapi.IocComplete, &try)
			if err == nil {
				c.violation("COMPLETE accepted a bad completion", fmt.Sprintf("len 1 for xid %08x", x))
			}
			if err == unix.ESHUTDOWN || c.gone(err) {
				return
			}
		}
		time.Sleep(time.Duration(200+rng.Intn(800)) * time.Microsecond)
	}
}

// serve loops on GET_REQUEST/COMPLETE until the disk shuts down, misbehaving at
// random. The first thread also stalls its buffer with userfaultfd now and then.
// protnone and stall kinds first go through their hostile phase.
func (c *child) serve(rng *rand.Rand, staller bool) {
	if c.kind == kindProtnone && !c.protnoneLoop(c.until) {
		return
	}
	buf := alignedBuf(uapi.MaxSegment)
	rbuf := alignedBuf(uapi.MaxSegment)
	for {
		r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment}
		var stall *stallRegion
		var badArg uintptr // nonzero: pass this instead of the request
		switch n := rng.Intn(100); {
		case n < 4: // a bad buffer: a write's data cannot land there
			p, _ := c.bad.pick(rng.Int())
			r.Buf = uint64(p)
		case n < 6: // the argument itself is bad
			badArg, _ = c.bad.pick(rng.Int())
		case n < 8:
			r.Flags = 1 << uint(1+rng.Intn(31)) // unknown flag
		case n < 10:
			r.BufLen = uint32(rng.Intn(4096))
		case n < 22 && staller:
			if s, err := newStallRegion(uapi.MaxSegment); err == nil {
				stall = s
				r.Buf = uint64(s.addr())
			} else if c.stalls == 0 {
				c.stalls = -1
				c.say("NOTE userfaultfd unavailable (%v): stalls use no userfaultfd", err)
			}
		}
		var raced chan struct{}
		if stall != nil {
			raced = make(chan struct{})
			go c.race(stall, rng.Int63(), raced)
		}
		if !staller {
			// NOWAIT, so it never sleeps holding serveMu.
			c.serveMu.RLock()
			r.Flags |= uapi.GetNowait
		}
		var err error
		if badArg != 0 {
			err = c.f.ioctl(c.fd, uapi.IocGetRequest, badArg)
		} else {
			err = call(c.f, c.fd, uapi.IocGetRequest, &r)
		}
		if stall != nil {
			stall.getDone.Store(true)
			<-raced
			stall.close()
			c.stalls++
		}
		if !staller {
			if err == nil && badArg == 0 {
				c.record(&r)
			}
			c.serveMu.RUnlock()
			if err == unix.EAGAIN {
				time.Sleep(time.Millisecond)
				continue
			}
		} else if err == nil && badArg == 0 {
			c.record(&r)
		}
		if err == unix.ESHUTDOWN || c.gone(err) {
			return
		}
		if err != nil {
			if r.Flags&^uint32(uapi.GetNowait) != 0 && err != unix.EINVAL && err != unix.EINTR {
				c.violation("unknown GET_REQUEST flags accepted", fmt.Sprintf("flags %#x: %s", r.Flags, errno(err)))
			}
			continue
		}
		if r.Flags&^uint32(uapi.GetNowait) != 0 {
			c.violation("unknown GET_REQUEST flags accepted", fmt.Sprintf("flags %#x returned xid %08x", r.Flags, r.Xid))
		}
		if badArg != 0 {
			// The kernel wrote the description through a bad pointer: it "succeeded".
			c.violation("GET_REQUEST wrote through a bad pointer", fmt.Sprintf("arg %#x", badArg))
			continue
		}
		if r.Op == uapi.OpWrite && r.Buf != uint64(ptr(&buf[0])) && (stall == nil || r.Buf != uint64(stall.addr())) {
			c.violation("GET_REQUEST copied a write into a bad buffer", fmt.Sprintf("buf %#x xid %08x", r.Buf, r.Xid))
		}
		data := buf[:r.Len]
		if stall != nil {
			data = stall.mem[:r.Len] // already resolved: the write's data is there
		}
		if c.kind == kindStall && time.Now().Before(c.until) {
			// Hold it, unanswered, until the submitter's timeout has failed it: the
			// COMPLETE afterwards must be refused.
			time.Sleep(time.Until(c.until))
		}
		c.answer(rng, &r, data, rbuf)
	}
}

// record notes an xid GET_REQUEST returned.
func (c *child) record(r *uapi.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done[r.Xid] {
		c.violation("request served twice", fmt.Sprintf("xid %08x handed out after it was completed", r.Xid))
	}
	c.handed[r.Xid] = true
	if r.Xid > c.maxXid {
		c.maxXid = r.Xid
	}
}

// answer completes one request, perhaps after some wrong COMPLETEs.
func (c *child) answer(rng *rand.Rand, r *uapi.Request, data, rbuf []byte) {
	good := uapi.Complete{Xid: r.Xid}
	if r.Op == uapi.OpRead {
		c.readStore(r.Pos, rbuf[:r.Len])
		good.Buf, good.Len = uint64(ptr(&rbuf[0])), r.Len
	}
	if rng.Intn(400) == 0 {
		return // never complete: the submitter's io_timeout must end it
	}
	n := rng.Intn(100)
	switch {
	case n < 8: // a wrong length
		bad := good
		bad.Len = good.Len + 512
		if r.Op == uapi.OpWrite {
			bad.Len = 4096
		}
		c.expectFail(&bad, "wrong length")
	case n < 13 && r.Op == uapi.OpRead: // data from a bad pointer
		bad := good
		p, name := c.bad.pick(rng.Int())
		bad.Buf = uint64(p)
		if name == "read-only" {
			break // readable: a legitimate source
		}
		c.expectFail(&bad, name+" buffer")
	case n < 16: // a future xid
		fut := good
		fut.Xid = r.Xid + 1000 + uint64(rng.Intn(1000))
		c.expectFail(&fut, "future xid")
	case n < 20: // fail it
		good = uapi.Complete{Xid: r.Xid, Status: -int32(unix.EIO)}
	}
	if good.Status == 0 && r.Op == uapi.OpWrite {
		c.writeStore(r.Pos, data)
	}
	err := call(c.f, c.fd, uapi.IocComplete, &good)
	if err == nil {
		c.completed(r.Xid)
	}
	if n >= 20 && n < 25 { // duplicate and stale completions
		if err := call(c.f, c.fd, uapi.IocComplete, &good); err == nil {
			c.violation("completed twice", fmt.Sprintf("xid %08x: a second COMPLETE succeeded", r.Xid))
		}
		c.mu.Lock()
		var stale uint64
		for x := range c.done {
			stale = x
			break
		}
		c.mu.Unlock()
		if stale != 0 {
			s := uapi.Complete{Xid: stale, Status: -int32(unix.EIO)}
			if err := call(c.f, c.fd, uapi.IocComplete, &s); err == nil {
				c.violation("completed twice", fmt.Sprintf("stale xid %08x: COMPLETE succeeded again", stale))
			}
		}
	}
}

// expectFail issues a COMPLETE that must be refused.
func (c *child) expectFail(bad *uapi.Complete, what string) {
	err := call(c.f, c.fd, uapi.IocComplete, bad)
	if err != nil {
		return
	}
	c.completed(bad.Xid)
	c.mu.Lock()
	handed := c.handed[bad.Xid]
	c.mu.Unlock()
	if !handed {
		c.violation("COMPLETE accepted an xid never handed out", fmt.Sprintf("%s: xid %08x", what, bad.Xid))
		return
	}
	c.violation("COMPLETE accepted a bad completion", fmt.Sprintf("%s: xid %08x", what, bad.Xid))
}

func (c *child) completed(xid uint64) {
	c.mu.Lock()
	if c.done[xid] {
		c.violation("completed twice", fmt.Sprintf("xid %08x", xid))
	}
	c.done[xid] = true
	c.mu.Unlock()
}

// race runs while the serving thread's GET_REQUEST may be stalled copying into the
// userfaultfd region: it tries to COMPLETE the request being copied (its xid is the
// next one), sometimes SHUTDOWNs the disk mid-copy, then lets the copy go on.
func (c *child) race(s *stallRegion, seed int64, done chan<- struct{}) {
	defer close(done)
	runtime.LockOSThread()
	rng := rand.New(rand.NewSource(seed))
	if !s.waitFault() {
		s.resolve()
		return
	}
	c.serveMu.Lock()
	defer c.serveMu.Unlock()
	c.mu.Lock()
	next := c.maxXid
	c.mu.Unlock()
	rb := alignedBuf(4096)
	for x := next + 1; x <= next+6; x++ {
		c.mu.Lock()
		handed := c.handed[x]
		c.mu.Unlock()
		if handed {
			continue // the other thread's: completing it would be legitimate (and wrong data)
		}
		for _, l := range []uint32{0, 4096} {
			try := uapi.Complete{Xid: x, Buf: uint64(ptr(&rb[0])), Len: l}
			if err := call(c.f, c.fd, uapi.IocComplete, &try); err == nil {
				c.completed(x)
				c.violation("COMPLETE accepted an xid never handed out",
					fmt.Sprintf("xid %08x completed while GET_REQUEST was still copying it", x))
			}
		}
	}
	if rng.Intn(8) == 0 {
		c.f.ioctl(c.fd, uapi.IocShutdown, 0) // SHUTDOWN mid-copy
	}
	time.Sleep(time.Duration(rng.Intn(20)) * time.Millisecond)
	s.resolve()
	unix.Munmap(rb)
}

func (c *child) readStore(pos uint64, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < len(p); {
		at := pos + uint64(i)
		b, in := c.store[at/4096], int(at%4096)
		n := min(4096-in, len(p)-i)
		if b == nil {
			clear(p[i : i+n])
		} else {
			copy(p[i:i+n], b[in:])
		}
		i += n
	}
}

func (c *child) writeStore(pos uint64, p []byte) {
	if pos%4096 != 0 || len(p)%4096 != 0 || pos+uint64(len(p)) > c.size {
		return // the parent only does aligned I/O; anything else is not ours to check
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < len(p); i += 4096 {
		c.store[(pos+uint64(i))/4096] = append([]byte(nil), p[i:i+4096]...)
	}
}
