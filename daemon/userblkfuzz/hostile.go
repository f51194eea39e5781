package main

import (
	"fmt"
	"math/rand"
	"runtime"
	"time"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

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
	pinOthers()
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

// race runs while the serving thread's GET_REQUEST may be stalled copying into the
// userfaultfd region: it tries to COMPLETE the request being copied (its xid is the
// next one), sometimes SHUTDOWNs the disk mid-copy, then lets the copy go on.
func (c *child) race(s *stallRegion, seed int64, done chan<- struct{}) {
	defer close(done)
	runtime.LockOSThread()
	pinOthers()
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

// closeBusyAfter: an ioctl of serveNowait that has lasted this long is in its BUSY
// section. Without a request a NOWAIT GET_REQUEST returns at once (well under a
// millisecond, also under TCG); with one it copies for at least busy_delay_us, which the
// parent sets to its maximum for close rounds.
const closeBusyAfter = 4 * time.Millisecond

// serveNowait serves honestly (the close kind's thread i): NOWAIT GET_REQUEST, then
// COMPLETE with the right data, never asleep in the kernel, so once the fd is closed
// every thread sees it at its next call and the kernel can release the disk. It marks
// each ioctl's start in c.inside[i] for closeWhileBusy.
func (c *child) serveNowait(i int) {
	buf := alignedBuf(uapi.MaxSegment)
	rbuf := alignedBuf(uapi.MaxSegment)
	in := &c.inside[i]
	for {
		r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment, Flags: uapi.GetNowait}
		in.Store(time.Now().UnixNano())
		err := call(c.f, c.fd, uapi.IocGetRequest, &r)
		in.Store(0)
		if err == unix.ESHUTDOWN || c.gone(err) {
			return
		}
		if err == unix.EAGAIN {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		if err != nil {
			continue
		}
		c.record(&r)
		good := uapi.Complete{Xid: r.Xid}
		if r.Op == uapi.OpRead {
			c.readStore(r.Pos, rbuf[:r.Len])
			good.Buf, good.Len = uint64(ptr(&rbuf[0])), r.Len
		} else {
			c.writeStore(r.Pos, buf[:r.Len])
		}
		in.Store(time.Now().UnixNano())
		err = call(c.f, c.fd, uapi.IocComplete, &good)
		in.Store(0)
		if err == nil {
			c.completed(r.Xid)
		}
		if err == unix.ESHUTDOWN || c.gone(err) {
			return
		}
	}
}

// closeWhileBusy closes the control fd (closeUnder) once a serving thread has been
// inside an ioctl for closeBusyAfter, after a random 150-450 ms of serving, or after 3 s
// in any case: the close then meets a copy in progress (the module counts close_busy),
// and the fd's release waits for that ioctl to return.
func (c *child) closeWhileBusy(rng *rand.Rand) {
	runtime.LockOSThread()
	pinOthers()
	time.Sleep(time.Duration(150+rng.Intn(300)) * time.Millisecond)
	giveUp := time.Now().Add(3 * time.Second)
	for time.Now().Before(giveUp) {
		now := time.Now().UnixNano()
		for i := range c.inside {
			if t := c.inside[i].Load(); t != 0 && time.Duration(now-t) >= closeBusyAfter {
				c.closeUnder()
				c.say("CLOSED %d", time.Duration(now-t).Milliseconds())
				return
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	c.closeUnder()
	c.say("CLOSED -1")
}
