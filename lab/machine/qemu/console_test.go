package qemu

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/images"
)

func TestConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	c, err := newConsole(path)
	if err != nil {
		t.Fatal(err)
	}
	c.read(strings.NewReader("booting\r\nKMODLAB-READY 6.1 up 1.0\r\n[ 9.1] Kernel panic - not syncing: Fatal exception\nlast"))
	if !c.Ready() {
		t.Error("ready marker missed")
	}
	if r := c.Crash(); r == nil || r.Title != "kernel panic: Fatal exception" {
		t.Errorf("crash = %+v", r)
	}
	want := "booting\nKMODLAB-READY 6.1 up 1.0\n[ 9.1] Kernel panic - not syncing: Fatal exception\nlast\n"
	if c.Text() != want || c.Len() != len(want) {
		t.Errorf("text %q", c.Text())
	}
	if c.Tail(1) != "last" {
		t.Errorf("tail %q", c.Tail(1))
	}
	c.close()
	if data, _ := os.ReadFile(path); string(data) != want {
		t.Errorf("console log %q", data)
	}
}

// flood is n bytes of 'x' without a newline, then tail, produced as read.
type flood struct {
	n    int
	tail string
}

func (f *flood) Read(p []byte) (int, error) {
	if f.n > 0 {
		k := min(len(p), f.n)
		for i := range p[:k] {
			p[i] = 'x'
		}
		f.n -= k
		return k, nil
	}
	if f.tail == "" {
		return 0, io.EOF
	}
	k := copy(p, f.tail)
	f.tail = f.tail[k:]
	return k, nil
}

// A guest printing without a newline cannot grow the lab's memory: the console reader
// bounds a line as the kernel log's reader does (128 MiB in one line grew the heap by
// ~780 MiB), and the lines after it are still read.
func TestConsoleLineIsBounded(t *testing.T) {
	c, err := newConsole(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c.read(&flood{n: 64 << 20, tail: "\n" + images.ReadyMarker + "\n"})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("reading a 64 MiB line allocated %d MiB", grew>>20)
	}
	if !c.Ready() {
		t.Error("the line after the flood was not read")
	}
	if !strings.Contains(c.Text(), "a console line over") {
		t.Errorf("the dropped line is not reported:\n%.200s", c.Text())
	}
}

// FuzzConsoleRead: whatever a guest prints, the console reader keeps every line it
// does not drop, finds the ready marker only on a line holding it, and does not panic
// (seeds in testdata/fuzz/FuzzConsoleRead).
func FuzzConsoleRead(f *testing.F) {
	f.Add("booting\r\nKMODLAB-READY 6.1 up 1.0\r\n[ 9.1] Kernel panic - not syncing: Fatal exception\nlast")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		c, err := newConsole(filepath.Join(dir, "console.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		c.read(strings.NewReader(s))
		if c.Ready() != strings.Contains(s, images.ReadyMarker) {
			t.Fatalf("ready %v for %q", c.Ready(), s)
		}
		if p := strings.Contains(s, "Kernel panic - not syncing"); (c.Crash() != nil) != p {
			t.Fatalf("crash %+v for %q", c.Crash(), s)
		}
		var want strings.Builder
		for _, l := range strings.SplitAfter(s, "\n") {
			if l != "" {
				want.WriteString(strings.TrimRight(l, "\r\n") + "\n")
			}
		}
		if got := c.Text(); got != want.String() {
			t.Fatalf("text %q, want %q", got, want.String())
		}
	})
}
