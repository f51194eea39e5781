package main

import (
	"bytes"
	"hash/crc32"
	"strings"
	"testing"
	"unsafe"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

// fakeDev plays the kernel: hands out queued requests (copying write data into the
// daemon's buffer) and records completions (copying read data out).
type fakeDev struct {
	reqs      []uapi.Request
	writes    map[uint64][]byte
	done      []uapi.Complete
	readData  map[uint64][]byte
	completeE error
}

func (f *fakeDev) GetRequest(r *uapi.Request) error {
	if len(f.reqs) == 0 {
		return ErrShutdown
	}
	next := f.reqs[0]
	f.reqs = f.reqs[1:]
	next.Buf, next.BufLen = r.Buf, r.BufLen
	if next.Op == uapi.OpWrite {
		buf := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(r.Buf))), r.BufLen)
		copy(buf, f.writes[next.Xid])
	}
	*r = next
	return nil
}

func (f *fakeDev) Complete(c *uapi.Complete) error {
	if f.completeE != nil && c.Status == 0 {
		err := f.completeE
		f.completeE = nil
		return err
	}
	f.done = append(f.done, *c)
	if c.Len > 0 {
		f.readData[c.Xid] = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(c.Buf))), c.Len)...)
	}
	return nil
}

func TestServeWriteThenRead(t *testing.T) {
	data := bytes.Repeat([]byte("kmodlab!"), 512)
	f := &fakeDev{writes: map[uint64][]byte{1: data}, readData: map[uint64][]byte{},
		reqs: []uapi.Request{
			{Xid: 1, Op: uapi.OpWrite, Pos: 8192, Len: 4096},
			{Xid: 2, Op: uapi.OpRead, Pos: 8192, Len: 4096},
			{Xid: 3, Op: uapi.OpRead, Pos: 0, Len: 4096},
		}}
	var log bytes.Buffer
	s := &Server{Dev: f, Store: newMemStore(1 << 20), Log: &log}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	if len(f.done) != 3 || f.done[0].Len != 0 || f.done[0].Status != 0 {
		t.Fatalf("completions: %+v", f.done)
	}
	if !bytes.Equal(f.readData[2], data) {
		t.Error("read back other data than written")
	}
	if !bytes.Equal(f.readData[3], make([]byte, 4096)) {
		t.Error("never-written blocks must read as zeros")
	}
	if want := "userblkd: read  00000002 0000000000002000 0000000000001000 " + crcHex(data); !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log.String())
	}
	if s.Stats.Reads.Load() != 2 || s.Stats.Writes.Load() != 1 {
		t.Error("stats")
	}
}

func crcHex(b []byte) string {
	const hx = "0123456789abcdef"
	c := crc32.ChecksumIEEE(b)
	out := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		out[i] = hx[c&15]
		c >>= 4
	}
	return string(out)
}

func TestServeErrors(t *testing.T) {
	// Beyond the disk: the request fails with EIO, the daemon goes on.
	f := &fakeDev{readData: map[uint64][]byte{}, reqs: []uapi.Request{{Xid: 9, Op: uapi.OpRead, Pos: 1 << 30, Len: 4096}, {Xid: 10, Op: uapi.OpRead, Len: 4096}}}
	s := &Server{Dev: f, Store: newMemStore(1 << 20)}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	if f.done[0].Status != -int32(unix.EIO) || f.done[1].Status != 0 {
		t.Errorf("completions: %+v", f.done)
	}
	// The kernel could not copy our data in (EFAULT): the segment is failed, not lost.
	f = &fakeDev{readData: map[uint64][]byte{}, completeE: unix.EFAULT, reqs: []uapi.Request{{Xid: 1, Op: uapi.OpRead, Len: 4096}}}
	s = &Server{Dev: f, Store: newMemStore(1 << 20)}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	if len(f.done) != 1 || f.done[0].Status != -int32(unix.EIO) {
		t.Errorf("after EFAULT: %+v", f.done)
	}
	// A request the submitter gave up on (ENOENT) does not stop the daemon.
	f = &fakeDev{readData: map[uint64][]byte{}, completeE: unix.ENOENT, reqs: []uapi.Request{{Xid: 1, Op: uapi.OpRead, Len: 4096}, {Xid: 2, Op: uapi.OpRead, Len: 4096}}}
	s = &Server{Dev: f, Store: newMemStore(1 << 20)}
	if err := s.Serve(); err != nil || len(f.done) != 1 || f.done[0].Xid != 2 {
		t.Errorf("after ENOENT: %v %+v", err, f.done)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64M": 64 << 20, "4K": 4096, "1G": 1 << 30, "8192": 8192} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "12", "-4K", "3M5"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
