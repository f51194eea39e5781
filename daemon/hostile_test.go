package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"golang.org/x/sys/unix"
)

func TestShortReadAtEOFZeroFills(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "backing"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte{0xAA}, 1024)); err != nil { // 1 KiB: shorter than a block
		t.Fatal(err)
	}
	fd := &fakeDev{readData: map[uint64][]byte{}, writes: map[uint64][]byte{7: bytes.Repeat([]byte{0x55}, 4096)},
		reqs: []uapi.Request{
			{Xid: 7, Op: uapi.OpWrite, Pos: 1 << 20, Len: 4096}, // fills the daemon's buffer with 0x55
			{Xid: 8, Op: uapi.OpRead, Pos: 0, Len: 4096},        // 1 KiB of data, then EOF
		}}
	s := &Server{Dev: fd, Store: &readOnlyAt{f: f}}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	got := fd.readData[8]
	want := append(bytes.Repeat([]byte{0xAA}, 1024), make([]byte, 3072)...)
	if !bytes.Equal(got, want) {
		t.Errorf("short read at EOF: the rest holds %x…, want zeros", got[1024:1040])
	}
}

// readOnlyAt is a file backend that drops writes (the write above only dirties the
// daemon's buffer).
type readOnlyAt struct{ f *os.File }

func (r *readOnlyAt) ReadAt(p []byte, off int64) (int, error)  { return r.f.ReadAt(p, off) }
func (r *readOnlyAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
func (r *readOnlyAt) Sync() error                              { return nil }

func TestMemStoreRejectsOverflow(t *testing.T) {
	m := newMemStore(1 << 20)
	buf := make([]byte, 4096)
	for _, off := range []int64{math.MaxInt64 - 100, math.MaxInt64, -1, 1<<20 - 4095, 1 << 20} {
		if _, err := m.WriteAt(buf, off); err == nil {
			t.Errorf("WriteAt(4096 bytes @%d) on a 1 MiB disk succeeded", off)
		}
		if _, err := m.ReadAt(buf, off); err == nil {
			t.Errorf("ReadAt(4096 bytes @%d) on a 1 MiB disk succeeded", off)
		}
	}
	if _, err := m.WriteAt(buf, 1<<20-4096); err != nil {
		t.Errorf("the last block: %v", err)
	}
}

func TestBackingFileKeptLockedAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	data := bytes.Repeat([]byte("keep me!"), 1<<17) // 1 MiB
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := openBacking(path, 64<<10) // a disk smaller than the file
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if st.Size() != int64(len(data)) {
		t.Errorf("existing file shrunk to %d bytes", st.Size())
	}
	if _, err := openBacking(path, 64<<10); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Errorf("a second daemon on the same file: %v, want a lock error", err)
	}
	f.Close()
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, data) {
		t.Error("existing file's contents changed")
	}

	fresh := filepath.Join(t.TempDir(), "new.img")
	f, err = openBacking(fresh, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ = f.Stat()
	if st.Size() != 2<<20 {
		t.Errorf("new file is %d bytes, want the disk's 2 MiB", st.Size())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("new backing file has mode %v, want no group/other access", perm)
	}
	// A file shorter than the disk is extended (sparse), not refused.
	short := filepath.Join(t.TempDir(), "short.img")
	os.WriteFile(short, []byte("x"), 0o600)
	g, err := openBacking(short, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	st, _ = g.Stat()
	g.Close()
	if st.Size() != 1<<20 {
		t.Errorf("short file is %d bytes, want it extended to 1 MiB", st.Size())
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	shut := make(chan struct{}, 2)
	exited := make(chan int, 1)
	go handleSignals(sigs, func() { shut <- struct{}{} }, func(code int) { exited <- code })
	sigs <- syscall.SIGINT
	<-shut
	select {
	case code := <-exited:
		t.Fatalf("exited (%d) after the first signal; it must shut down cleanly first", code)
	default:
	}
	sigs <- syscall.SIGINT
	if code := <-exited; code == 0 {
		t.Error("the second signal exited with status 0")
	}
	if len(shut) != 0 {
		t.Error("the second signal shut down again instead of exiting")
	}
}

// flusherDev records, from the thread that issues each GET_REQUEST, whether that thread
// is an I/O flusher (PR_GET_IO_FLUSHER): the flag is per thread, and the thread that
// serves is the one reclaim must not block.
type flusherDev struct {
	mu    sync.Mutex
	calls int
	seen  []int
}

func (d *flusherDev) GetRequest(r *uapi.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.calls++; d.calls > 8 {
		return ErrShutdown
	}
	v, err := unix.PrctlRetInt(prGetIOFlusher, 0, 0, 0, 0)
	if err != nil {
		v = -1
	}
	d.seen = append(d.seen, v)
	return unix.EAGAIN
}

func (d *flusherDev) Complete(c *uapi.Complete) error { return nil }

func TestWorkersAreIOFlushers(t *testing.T) {
	// Both prctls need CAP_SYS_RESOURCE: CI runs tests as root; a container may not
	// grant it. Probe on a thread of its own (locked, so it dies with the flag).
	probe := make(chan error)
	go func() {
		runtime.LockOSThread()
		probe <- ioFlusher()
	}()
	if err := <-probe; err != nil {
		t.Skipf("%v (needs CAP_SYS_RESOURCE)", err)
	}
	d := &flusherDev{}
	if err := serveWorkers(&Server{Dev: d, Store: newMemStore(1 << 20)}, 3, -2, func() {}); err != nil {
		t.Fatal(err)
	}
	if len(d.seen) == 0 {
		t.Fatal("no GET_REQUEST was issued")
	}
	for i, v := range d.seen {
		if v != 1 {
			t.Errorf("GET_REQUEST %d came from a thread with PR_GET_IO_FLUSHER = %d, want 1", i, v)
		}
	}
}
