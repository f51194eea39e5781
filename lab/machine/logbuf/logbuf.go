// Package logbuf is the lab's one log buffer for growing machine output: a QEMU serial
// console or a board's followed kernel log. It keeps at most a fixed number of bytes in
// memory, spills everything to a file, and hands out absolute byte offsets, so a reader
// that remembered an offset can ask for everything after it even when that range has
// left memory (it is read back from the file). Waiters learn about new output without
// polling, so a crash watcher scans only what is new.
package logbuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// DefaultMax is the in-memory bound New uses when given 0.
const DefaultMax = 8 << 20

// ErrClosed is returned by Wait once the buffer is closed and no newer output exists.
var ErrClosed = errors.New("logbuf: closed")

// Buffer is a bounded, spilled, concurrent-safe log. The zero value is not usable: call New.
type Buffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte // bytes [start, total) of the log
	start   int
	total   int
	path    string   // spill file, "" for none
	file    *os.File // open for writing until Close
	fileLen int      // bytes of the log that reached the file, from offset 0
	fileErr error
	changed chan struct{} // closed (and replaced) on every write and on Close
	closed  bool
}

// New makes a buffer keeping at most max bytes in memory (0: DefaultMax). When path is
// not empty, the file is created (truncated) and receives every byte written; evicted
// ranges are read back from it.
func New(max int, path string) (*Buffer, error) {
	if max <= 0 {
		max = DefaultMax
	}
	b := &Buffer{max: max, path: path, changed: make(chan struct{})}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		b.file = f
	}
	return b, nil
}

// Write appends p: to the spill file, then to memory, evicting the oldest whole lines
// beyond the bound. It never fails because of the file: a spill error is kept (see Err)
// and later reads of evicted ranges say the bytes are gone.
func (b *Buffer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil && b.fileErr == nil {
		n, err := b.file.Write(p)
		b.fileLen += n
		if err != nil {
			b.fileErr = err
		}
	}
	b.buf = append(b.buf, p...)
	b.total += len(p)
	if len(b.buf) > b.max {
		b.evict()
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// evict drops the oldest bytes down to 3/4 of the bound (amortizing the copy), at a line
// boundary when there is one close by.
func (b *Buffer) evict() {
	n := len(b.buf) - b.max*3/4
	if i := bytes.IndexByte(b.buf[n:], '\n'); i >= 0 && i < b.max/4 {
		n += i + 1
	}
	if n > len(b.buf) {
		n = len(b.buf)
	}
	// A fresh slice: the old backing array (possibly much larger than max after a big
	// write) is released.
	kept := make([]byte, len(b.buf)-n, b.max+b.max/4)
	copy(kept, b.buf[n:])
	b.buf = kept
	b.start += n
}

// WriteString is Write for a string.
func (b *Buffer) WriteString(s string) (int, error) { return b.Write([]byte(s)) }

// Len is the absolute offset of the end of the log: every byte ever written.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// Kept is how many bytes are held in memory.
func (b *Buffer) Kept() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// Path is the spill file ("" for none).
func (b *Buffer) Path() string { return b.path }

// Err is the first error writing the spill file.
func (b *Buffer) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fileErr
}

// DroppedMarker introduces bytes Since could not return: evicted from memory and not
// readable from a spill file.
const DroppedMarker = "[logbuf: %d bytes dropped]\n"

// Since returns the log from offset off to the end. A range that left memory is read
// back from the spill file; if that is impossible, the result starts with a DroppedMarker
// line saying how many bytes are missing, followed by what memory holds.
func (b *Buffer) Since(off int) string {
	b.mu.Lock()
	if off < 0 {
		off = 0
	}
	if off >= b.total {
		b.mu.Unlock()
		return ""
	}
	if off >= b.start {
		s := string(b.buf[off-b.start:])
		b.mu.Unlock()
		return s
	}
	mem := string(b.buf)
	start, path, fileLen := b.start, b.path, b.fileLen
	b.mu.Unlock()
	// [off, start) is only on disk. The file is append-only, so reading it without the
	// lock is safe for offsets below fileLen.
	end := start
	if end > fileLen {
		end = fileLen
	}
	var old []byte
	if path != "" && off < end {
		if f, err := os.Open(path); err == nil {
			old = make([]byte, end-off)
			n, _ := f.ReadAt(old, int64(off))
			old = old[:n]
			f.Close()
		}
	}
	if off+len(old) < start {
		// The file missed bytes or could not be read: say how much is gone and give
		// what is contiguous with memory.
		return fmt.Sprintf(DroppedMarker, start-off) + mem
	}
	return string(old) + mem
}

// String is the whole log (Since(0)).
func (b *Buffer) String() string { return b.Since(0) }

// Tail returns the last n lines held in memory, without the final newline.
func (b *Buffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n <= 0 {
		return ""
	}
	s := b.buf
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	i := len(s)
	for k := 0; k < n; k++ {
		i = bytes.LastIndexByte(s[:i], '\n')
		if i < 0 {
			break
		}
	}
	return string(s[i+1:])
}

// Changed returns a channel closed at the next write (or Close). Take it, check Len,
// then wait on it: no write between the two is missed.
func (b *Buffer) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Wait blocks until the log is longer than off and returns its new length. It returns
// ErrClosed when the buffer is closed with nothing after off, or ctx's error.
func (b *Buffer) Wait(ctx context.Context, off int) (int, error) {
	for {
		b.mu.Lock()
		total, closed, ch := b.total, b.closed, b.changed
		b.mu.Unlock()
		if total > off {
			return total, nil
		}
		if closed {
			return total, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return total, ctx.Err()
		}
	}
}

// Close closes the spill file and wakes every waiter. Writes after Close are kept in
// memory only; Since still reads evicted ranges from the file.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var err error
	if b.file != nil {
		err = b.file.Close()
		b.file = nil
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return err
}

// Closed reports whether Close was called.
func (b *Buffer) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

var _ io.Writer = (*Buffer)(nil)
var _ io.StringWriter = (*Buffer)(nil)
