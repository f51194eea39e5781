package qemu

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/machine/logbuf"
	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/trace"
)

// ConsoleMemory bounds the console output a guest keeps in memory; the rest is read back
// from the console log file.
const ConsoleMemory = 8 << 20

// Console is the serial console of a guest: a bounded log (lab/machine/logbuf) spilled to the
// console log file, plus the ready marker, the first kernel panic and the time of the
// last output.
type Console struct {
	*logbuf.Buffer
	mu    sync.Mutex
	ready bool
	crash *console.Report
	last  time.Time
	// onCrash runs once, when the first kernel panic line is seen.
	onCrash func()
}

func newConsole(path string) (*Console, error) {
	b, err := logbuf.New(ConsoleMemory, path)
	if err != nil {
		return nil, err
	}
	return &Console{Buffer: b, last: time.Now()}, nil
}

// read takes the console line by line until r ends. A line is bounded as the kernel
// log's are (trace.ReadLines): a guest printing without a newline (128 MiB of it grew
// the heap by ~780 MiB) gets its line dropped past trace.MaxLine, and the console log
// says so.
func (c *Console) read(r io.Reader) {
	trace.ReadLines(r, c.line, func() {
		c.line(fmt.Sprintf("kmodlab: a console line over %d bytes was dropped", trace.MaxLine))
	})
}

func (c *Console) line(l string) {
	c.Buffer.WriteString(l + "\n")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = time.Now()
	if strings.Contains(l, images.ReadyMarker) {
		c.ready = true
	}
	if i := strings.Index(l, "Kernel panic - not syncing"); i >= 0 && c.crash == nil {
		c.crash = &console.Report{Title: "kernel panic: " + strings.TrimSpace(strings.TrimPrefix(l[i+len("Kernel panic - not syncing"):], ":")), Kind: "panic"}
		if c.onCrash != nil {
			go c.onCrash()
		}
	}
}

// Ready reports whether the ready marker has been printed.
func (c *Console) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// Crash returns a kernel panic seen on the console, if any.
func (c *Console) Crash() *console.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crash
}

// Text returns the console output so far.
func (c *Console) Text() string { return c.Since(0) }

// Silent is how long the console has printed nothing.
func (c *Console) Silent() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.last)
}

// WaitQuiet returns the output after off once the console has printed nothing for quiet
// (or ctx ends, or max has passed).
func (c *Console) WaitQuiet(ctx context.Context, off int, quiet, max time.Duration) string {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		n := c.Len()
		t := time.NewTimer(quiet)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.Since(off)
		case <-t.C:
		}
		if c.Len() == n {
			break
		}
	}
	return c.Since(off)
}

func (c *Console) close() { c.Buffer.Close() }
