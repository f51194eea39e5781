package main

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

// Device is the control device's request interface: the real ioctls, or a fake in tests.
type Device interface {
	GetRequest(r *uapi.Request) error
	Complete(c *uapi.Complete) error
}

// Backend stores the disk's bytes.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Stats counts what the server did.
type Stats struct {
	Reads, Writes, Errors atomic.Int64
}

// Server serves requests from a Device out of a Backend.
type Server struct {
	Dev   Device
	Store Backend
	Log   io.Writer // one line per request (the daemon's view), or nil
	Poll  bool      // busy-poll GET_REQUEST instead of sleeping in it
	Stats Stats
	logMu sync.Mutex
}

// ErrShutdown is returned by Device.GetRequest once the disk is shutting down.
var ErrShutdown = errors.New("device shut down")

// Serve loops until the device shuts down. It is safe to run several at once.
func (s *Server) Serve() error {
	buf := make([]byte, uapi.MaxSegment)
	for {
		req := uapi.Request{Buf: uint64(uintptr(unsafe.Pointer(&buf[0]))), BufLen: uint32(len(buf))}
		if s.Poll {
			req.Flags = uapi.GetNowait
		}
		if err := s.Dev.GetRequest(&req); err != nil {
			if errors.Is(err, ErrShutdown) {
				return nil
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			if errors.Is(err, unix.EFAULT) {
				// The kernel could not copy a write's data out to us (it logs why);
				// it retries the request, then fails it.
				s.Stats.Errors.Add(1)
				continue
			}
			return fmt.Errorf("GET_REQUEST: %w", err)
		}
		if err := s.handle(&req, buf); err != nil {
			if errors.Is(err, ErrShutdown) {
				return nil
			}
			return err
		}
	}
}

// handle serves one request whose write data (if any) is already in buf.
func (s *Server) handle(req *uapi.Request, buf []byte) error {
	c := uapi.Complete{Xid: req.Xid}
	if req.Len > uint32(len(buf)) {
		c.Status = -int32(unix.EINVAL)
		s.Stats.Errors.Add(1)
		return s.complete(&c)
	}
	data := buf[:req.Len]
	var err error
	switch req.Op {
	case uapi.OpWrite:
		_, err = s.Store.WriteAt(data, int64(req.Pos))
		s.Stats.Writes.Add(1)
	case uapi.OpRead:
		var n int
		n, err = s.Store.ReadAt(data, int64(req.Pos))
		if errors.Is(err, io.EOF) {
			// Beyond the backing file's end: zeros, not the previous request's bytes.
			clear(data[n:])
			err = nil
		}
		c.Buf = uint64(uintptr(unsafe.Pointer(&buf[0])))
		c.Len = req.Len
		s.Stats.Reads.Add(1)
	default:
		err = fmt.Errorf("unknown op %d", req.Op)
	}
	if err != nil {
		c.Status = -int32(unix.EIO)
		c.Buf, c.Len = 0, 0
		s.Stats.Errors.Add(1)
	}
	if s.Log != nil {
		op := "read"
		if req.Op == uapi.OpWrite {
			op = "write"
		}
		s.logMu.Lock()
		fmt.Fprintf(s.Log, "userblkd: %-5s %08x %016x %016x %08x status=%d\n", op, req.Xid, req.Pos, req.Len,
			crc32.ChecksumIEEE(data), c.Status)
		s.logMu.Unlock()
	}
	return s.complete(&c)
}

func (s *Server) complete(c *uapi.Complete) error {
	for {
		err := s.Dev.Complete(c)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EFAULT) && c.Status == 0 {
			// The kernel could not copy our data into the segment (it logs why): fail
			// the segment instead of leaving it pending.
			s.Stats.Errors.Add(1)
			c.Status, c.Buf, c.Len = -int32(unix.EIO), 0, 0
			continue
		}
		if errors.Is(err, unix.ENOENT) {
			// The submitter gave up on it (atomic mode's busy-wait timed out).
			s.Stats.Errors.Add(1)
			return nil
		}
		if err != nil && !errors.Is(err, ErrShutdown) {
			return fmt.Errorf("COMPLETE %08x: %w", c.Xid, err)
		}
		return err
	}
}

// ctlDevice is the real control device.
type ctlDevice struct{ fd int }

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

func (d *ctlDevice) create(size uint64, mode, ioTimeout uint32) (int, error) {
	c := uapi.Create{Size: size, MapMode: mode, IOTimeout: ioTimeout}
	if err := ioctl(d.fd, uapi.IocCreate, unsafe.Pointer(&c)); err != nil {
		return 0, fmt.Errorf("CREATE: %w", err)
	}
	return int(c.Index), nil
}

func (d *ctlDevice) GetRequest(r *uapi.Request) error {
	err := ioctl(d.fd, uapi.IocGetRequest, unsafe.Pointer(r))
	if errors.Is(err, unix.ESHUTDOWN) {
		return ErrShutdown
	}
	return err
}

func (d *ctlDevice) Complete(c *uapi.Complete) error {
	err := ioctl(d.fd, uapi.IocComplete, unsafe.Pointer(c))
	if errors.Is(err, unix.ESHUTDOWN) {
		return ErrShutdown
	}
	return err
}

func (d *ctlDevice) shutdown() error { return ioctl(d.fd, uapi.IocShutdown, nil) }

// memStore is a sparse in-memory disk, 4 KiB pages allocated on first write.
type memStore struct {
	mu    sync.RWMutex
	size  int64
	pages map[int64][]byte
}

const pageSize = 4096

func newMemStore(size int64) *memStore { return &memStore{size: size, pages: map[int64][]byte{}} }

// inRange reports whether len bytes at off lie inside the disk, without overflowing.
func (m *memStore) inRange(off int64, n int) bool {
	return off >= 0 && int64(n) <= m.size && off <= m.size-int64(n)
}

// span calls fn for each page that len(p) bytes at off touch, with the page's number,
// the offset inside it and what is left of p; fn returns the bytes it copied. The
// caller holds mu.
func (m *memStore) span(verb string, p []byte, off int64, fn func(pg, in int64, rest []byte) int) (int, error) {
	if !m.inRange(off, len(p)) {
		return 0, fmt.Errorf("%s %d@%d beyond %d", verb, len(p), off, m.size)
	}
	for n := 0; n < len(p); {
		pos := off + int64(n)
		n += fn(pos/pageSize, pos%pageSize, p[n:])
	}
	return len(p), nil
}

var zeroPage = make([]byte, pageSize)

func (m *memStore) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.span("read", p, off, func(pg, in int64, rest []byte) int {
		if b := m.pages[pg]; b != nil {
			return copy(rest, b[in:])
		}
		return copy(rest, zeroPage[in:]) // never written
	})
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.span("write", p, off, func(pg, in int64, rest []byte) int {
		b := m.pages[pg]
		if b == nil {
			b = make([]byte, pageSize)
			m.pages[pg] = b
		}
		return copy(b[in:], rest)
	})
}

func (m *memStore) Sync() error { return nil }
