package main

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

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
			if err == nil && badArg == 0 && r.Op == uapi.OpWrite && int(r.Len) <= len(buf) {
				// The write's data is in the region, which close unmaps: keep it.
				copy(buf, stall.mem[:r.Len])
			}
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
		data := buf[:r.Len] // (a stalled write's data was copied here from its region)
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
