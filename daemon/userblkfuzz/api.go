package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

// disks lists the userblk disks that exist now.
func disks() map[string]bool {
	m, _ := filepath.Glob("/sys/block/userblk*")
	out := map[string]bool{}
	for _, p := range m {
		out[filepath.Base(p)] = true
	}
	return out
}

func unsafeAllowed() bool {
	b, err := os.ReadFile("/sys/module/userblk/parameters/unsafe_modes")
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// apiRound abuses fresh control fds: calls before CREATE, bad CREATEs, CREATE racing
// CREATE on one fd, bad flags and xids on an unserved disk, SHUTDOWN; then checks no
// disk outlives the fds.
func (f *fuzzer) apiRound(rng *rand.Rand) {
	before := disks()
	bad, err := newBadPointers()
	if err != nil {
		f.note("bad pointers: " + err.Error())
		return
	}
	defer bad.free()
	fd, err := unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		f.note(fmt.Sprintf("open %s: %v", f.ctl, err))
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		return
	}
	// Before CREATE nothing but CREATE works.
	scratch := getScratch()
	defer putScratch(scratch)
	for _, c := range []struct {
		req uintptr
		arg uintptr
	}{{uapi.IocGetRequest, uintptr(unsafe.Pointer(&scratch[0]))}, {uapi.IocComplete, uintptr(unsafe.Pointer(&scratch[0]))},
		{uapi.IocShutdown, 0}, {uapi.IocGetRequest, bad.kernel}} {
		if err := f.ioctl(fd, c.req, c.arg); err == nil {
			f.violate("ioctl worked before CREATE", fmt.Sprintf("ioctl %#x", c.req))
		}
	}
	if err := f.ioctl(fd, 0xdeadbeef&^uintptr(0xff00)|uapi.Magic<<8, 0); err == nil {
		f.violate("unknown ioctl accepted", "")
	}
	// CREATE with bad arguments: all refused, and no disk appears.
	badCreates := []uapi.Create{
		{Size: 0}, {Size: 4095}, {Size: 4096 + 512}, {Size: uapi.MaxSize + 4096}, {Size: 1 << 62},
		{Size: 1 << 20, MapMode: uint32(len(uapi.ModeList))}, {Size: 1 << 20, MapMode: 1 << 31}, {Size: 1 << 20, IOTimeout: uapi.MaxIOTimeout + 1},
	}
	for _, bc := range badCreates {
		x := bc
		if err := call(f, fd, uapi.IocCreate, &x); err == nil {
			f.violate("bad CREATE accepted", fmt.Sprintf("%+v made userblk%d", bc, x.Index))
			unix.Close(fd)
			fd, _ = unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
		}
	}
	for _, p := range []uintptr{bad.unmapped, bad.kernel} {
		if err := f.ioctl(fd, uapi.IocCreate, p); err == nil {
			f.violate("CREATE read through a bad pointer", fmt.Sprintf("%#x", p))
		}
	}
	if !unsafeAllowed() {
		for _, m := range []uint32{uapi.MapAtomic, uapi.MapLocal, uapi.MapAtomicSleep} {
			x := uapi.Create{Size: 1 << 20, MapMode: m}
			if err := call(f, fd, uapi.IocCreate, &x); err == nil {
				f.violate("bug mode accepted without unsafe_modes", fmt.Sprintf("map_mode %s made userblk%d", uapi.ModeList[m], x.Index))
				unix.Close(fd)
				fd, _ = unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
			}
		}
	}
	// CREATE races on one fd: exactly one may win.
	threads := 2 + rng.Intn(4)
	var wg sync.WaitGroup
	var won atomic.Int32
	startGun := make(chan struct{})
	// Sometimes the answer cannot be written back (a read-only mapping of a valid
	// request): the disk then exists although CREATE failed, and must still go with the fd.
	var roArg uintptr
	if rng.Intn(4) == 0 {
		if m, err := readOnlyCreate(uapi.Create{Size: 1 << 20, MapMode: f.mode, IOTimeout: f.timeout}); err == nil {
			defer unix.Munmap(m)
			roArg = ptr(&m[0])
		}
	}
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			x := getScratch()
			defer putScratch(x)
			*(*uapi.Create)(unsafe.Pointer(&x[0])) = uapi.Create{Size: 1 << 20, MapMode: f.mode, IOTimeout: f.timeout}
			arg := uintptr(unsafe.Pointer(&x[0]))
			if roArg != 0 && i == 0 {
				arg = roArg
			}
			<-startGun
			if err := f.ioctl(fd, uapi.IocCreate, arg); err == nil {
				won.Add(1)
			}
		}()
	}
	close(startGun)
	wg.Wait()
	now := disks()
	var mine []string
	for d := range now {
		if !before[d] {
			mine = append(mine, d)
		}
	}
	sort.Strings(mine)
	if len(mine) > 1 {
		f.violate("two disks from one fd", fmt.Sprintf("%d racing CREATEs on one fd made %s", threads, strings.Join(mine, ", ")))
	}
	if won.Load() > 1 {
		f.violate("two disks from one fd", fmt.Sprintf("%d of %d racing CREATEs succeeded", won.Load(), threads))
	}
	// A second CREATE on a served fd is refused.
	if len(mine) > 0 {
		x := uapi.Create{Size: 1 << 20, MapMode: f.mode}
		if err := call(f, fd, uapi.IocCreate, &x); err == nil {
			f.violate("two disks from one fd", fmt.Sprintf("a later CREATE made userblk%d", x.Index))
		}
		// Unknown flags are refused; NOWAIT on an idle disk says EAGAIN.
		buf := alignedBuf(uapi.MaxSegment)
		for i := 0; i < 4; i++ {
			r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment, Flags: uapi.GetNowait | 1<<uint(1+rng.Intn(31))}
			if err := call(f, fd, uapi.IocGetRequest, &r); err != unix.EINVAL {
				f.violate("unknown GET_REQUEST flags accepted", fmt.Sprintf("flags %#x: %s", r.Flags, errno(err)))
			}
		}
		r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment, Flags: uapi.GetNowait}
		if err := call(f, fd, uapi.IocGetRequest, &r); err == nil {
			f.violate("GET_REQUEST invented a request", fmt.Sprintf("xid %08x on an idle disk", r.Xid))
		}
		// Stale, future and garbage xids on an idle disk.
		for i := 0; i < 8; i++ {
			c := uapi.Complete{Xid: rng.Uint64() >> uint(rng.Intn(64)), Status: -int32(rng.Intn(200))}
			if err := call(f, fd, uapi.IocComplete, &c); err == nil {
				f.violate("COMPLETE accepted an xid never handed out", fmt.Sprintf("xid %#x on an idle disk", c.Xid))
			}
		}
		c := uapi.Complete{Xid: 1, Status: 5}
		if err := call(f, fd, uapi.IocComplete, &c); err == nil {
			f.violate("COMPLETE accepted a positive status", "")
		}
		if rng.Intn(2) == 0 {
			f.ioctl(fd, uapi.IocShutdown, 0)
			if err := call(f, fd, uapi.IocGetRequest, &r); err != unix.ESHUTDOWN {
				f.violate("GET_REQUEST after SHUTDOWN", errno(err))
			}
		}
		f.tryRmmod("a disk exists (unserved)")
		unix.Munmap(buf)
	}
	unix.Close(fd)
	for _, d := range mine {
		if disks()[d] {
			f.violate("a disk left after close", d+" still exists after its control fd was closed")
		}
	}
}

// readOnlyCreate maps a valid CREATE request read-only (through a file).
func readOnlyCreate(c uapi.Create) ([]byte, error) {
	fl, err := os.CreateTemp("", "userblkfuzz-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(fl.Name())
	defer fl.Close()
	b := make([]byte, 4096)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c)))
	if _, err := fl.Write(b); err != nil {
		return nil, err
	}
	return unix.Mmap(int(fl.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
}

// tryRmmod: rmmod must fail while a disk exists.
func (f *fuzzer) tryRmmod(when string) {
	if f.module == "" {
		return
	}
	f.ops.Add(1)
	err := unix.DeleteModule(f.module, unix.O_NONBLOCK)
	if err == nil {
		f.violate("rmmod succeeded while "+when, "the module is gone; stopping")
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
	}
}
