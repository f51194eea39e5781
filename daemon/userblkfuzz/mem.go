package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

// ioctl issues one ioctl on the control device, counting it.
func (f *fuzzer) ioctl(fd int, req uintptr, arg uintptr) error {
	f.ops.Add(1)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return e
	}
	return nil
}

func ptr[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

// Ioctl arguments live in mmap'd scratch pages, never in Go memory: the kernel keeps
// writing to the address it was given, and a goroutine's stack may move.
var (
	scratchMu   sync.Mutex
	scratchFree [][]byte
)

func getScratch() []byte {
	scratchMu.Lock()
	defer scratchMu.Unlock()
	if n := len(scratchFree); n > 0 {
		s := scratchFree[n-1]
		scratchFree = scratchFree[:n-1]
		return s
	}
	return alignedBuf(4096)
}

func putScratch(s []byte) {
	scratchMu.Lock()
	scratchFree = append(scratchFree, s)
	scratchMu.Unlock()
}

// call issues an ioctl with *v as its argument (copied in and back through scratch).
func call[T any](f *fuzzer, fd int, req uintptr, v *T) error {
	s := getScratch()
	defer putScratch(s)
	p := (*T)(unsafe.Pointer(&s[0]))
	*p = *v
	err := f.ioctl(fd, req, uintptr(unsafe.Pointer(&s[0])))
	*v = *p
	return err
}

// badPointers are addresses no ioctl may use: unmapped, read-only, the kernel's.
type badPointers struct {
	unmapped, readOnly, kernel uintptr
	roMem, noneMem             []byte
}

func newBadPointers() (*badPointers, error) {
	b := &badPointers{}
	// Reserved without access, and kept: an unmapped page could be reused by a later mmap.
	m, err := unix.Mmap(-1, 0, 1<<17, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	b.noneMem = m
	b.unmapped = uintptr(unsafe.Pointer(&m[0]))
	ro, err := unix.Mmap(-1, 0, 1<<17, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	b.roMem = ro
	b.readOnly = uintptr(unsafe.Pointer(&ro[0]))
	// An address in the kernel's half on every target: the x86_64 direct map (in arm64's
	// kernel half too: everything from 0xffff000000000000 up), or above
	// the 3 GiB split of i386 and armhf.
	if unsafe.Sizeof(uintptr(0)) == 8 {
		b.kernel = uintptr(0xffff888000001000 & (^uint64(0) >> (64 - 8*unsafe.Sizeof(uintptr(0)))))
	} else {
		b.kernel = 0xc0001000
	}
	return b, nil
}

// pick returns one bad pointer and its name.
func (b *badPointers) free() {
	unix.Munmap(b.roMem)
	unix.Munmap(b.noneMem)
}

func (b *badPointers) pick(n int) (uintptr, string) {
	switch n % 3 {
	case 0:
		return b.unmapped, "unmapped"
	case 1:
		return b.readOnly, "read-only"
	}
	return b.kernel, "kernel"
}

// alignedBuf is page-aligned memory (O_DIRECT, request buffers).
func alignedBuf(n int) []byte {
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(err)
	}
	return m
}

// userfaultfd: a region whose first touch stalls until we resolve it, to hold a
// daemon's copy (GET_REQUEST copying a write's data out) in the middle.
const (
	uffdAPI          = 0xAA
	uffdRegisterMiss = 1
	uffdEventPF      = 0x12
)

func iocUffd(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | 0xAA<<8 | nr }

var (
	uffdioAPI      = iocUffd(3, 0x3F, 24)
	uffdioRegister = iocUffd(3, 0x00, 32)
	uffdioZeropage = iocUffd(3, 0x04, 32)
)

type uffdioAPIArg struct{ API, Features, Ioctls uint64 }
type uffdioRegisterArg struct{ Start, Len, Mode, Ioctls uint64 }
type uffdioZeropageArg struct {
	Start, Len, Mode uint64
	Zeropage         int64
}

// stallRegion is anonymous memory registered with a userfaultfd.
type stallRegion struct {
	uffd    int
	mem     []byte
	getDone atomic.Bool // the GET_REQUEST using it returned: stop waiting for a fault
}

func newStallRegion(size int) (*stallRegion, error) {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("userfaultfd: %w", e)
	}
	api := uffdioAPIArg{API: uffdAPI}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		unix.Close(int(fd))
		return nil, fmt.Errorf("UFFDIO_API: %w", e)
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Close(int(fd))
		return nil, err
	}
	reg := uffdioRegisterArg{Start: uint64(uintptr(unsafe.Pointer(&mem[0]))), Len: uint64(size), Mode: uffdRegisterMiss}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioRegister, uintptr(unsafe.Pointer(&reg))); e != 0 {
		unix.Munmap(mem)
		unix.Close(int(fd))
		return nil, fmt.Errorf("UFFDIO_REGISTER: %w", e)
	}
	return &stallRegion{uffd: int(fd), mem: mem}, nil
}

func (s *stallRegion) addr() uintptr { return uintptr(unsafe.Pointer(&s.mem[0])) }

// waitFault waits for a fault in the region until the GET_REQUEST returns (or 2 s);
// true if one is pending.
func (s *stallRegion) waitFault() bool {
	fds := []unix.PollFd{{Fd: int32(s.uffd), Events: unix.POLLIN}}
	for i := 0; ; i++ {
		n, err := unix.Poll(fds, 5)
		if err == nil && n > 0 {
			break
		}
		if s.getDone.Load() || i > 400 {
			return false
		}
	}
	var msg [32]byte
	k, err := unix.Read(s.uffd, msg[:])
	return err == nil && k == 32 && msg[0] == uffdEventPF
}

// resolve maps zero pages under the whole region: every stalled access proceeds.
func (s *stallRegion) resolve() {
	z := uffdioZeropageArg{Start: uint64(s.addr()), Len: uint64(len(s.mem))}
	unix.Syscall(unix.SYS_IOCTL, uintptr(s.uffd), uffdioZeropage, uintptr(unsafe.Pointer(&z)))
}

func (s *stallRegion) close() {
	s.resolve()
	unix.Munmap(s.mem)
	unix.Close(s.uffd)
}

func errno(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	if err == nil {
		return "0"
	}
	return err.Error()
}

var _ = uapi.CtlName
