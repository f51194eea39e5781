package logbuf

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func lines(from, to int) string {
	var sb strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&sb, "line %04d\n", i) // 10 bytes each
	}
	return sb.String()
}

func TestBoundedAndSpilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	b, err := New(1000, path)
	if err != nil {
		t.Fatal(err)
	}
	all := lines(0, 500)
	for i := 0; i < 500; i++ {
		b.WriteString(lines(i, i+1))
	}
	if b.Len() != len(all) {
		t.Fatalf("Len = %d, want %d", b.Len(), len(all))
	}
	if k := b.Kept(); k > 1000 || k == 0 {
		t.Fatalf("kept %d bytes, bound 1000", k)
	}
	// Every offset, evicted or not, reads back exactly.
	for _, off := range []int{0, 10, 2345, len(all) - 500, len(all) - 1, len(all)} {
		if got := b.Since(off); got != all[off:] {
			t.Errorf("Since(%d): %d bytes, want %d", off, len(got), len(all)-off)
		}
	}
	if got := b.Tail(3); got != "line 0497\nline 0498\nline 0499" {
		t.Errorf("Tail(3) = %q", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != all {
		t.Errorf("spill file has %d bytes, want %d", len(data), len(all))
	}
	// Evicted ranges stay readable after Close.
	if got := b.Since(100); got != all[100:] {
		t.Errorf("Since after Close: %d bytes", len(got))
	}
}

func TestNoFileMarksDropped(t *testing.T) {
	b, _ := New(100, "")
	all := lines(0, 50)
	b.WriteString(all)
	got := b.Since(0)
	if !strings.HasPrefix(got, "[logbuf: ") || !strings.HasSuffix(all, got[strings.Index(got, "\n")+1:]) {
		t.Fatalf("Since(0) without a file = %q", got)
	}
	kept := got[strings.Index(got, "\n")+1:]
	want := fmt.Sprintf(DroppedMarker, len(all)-len(kept))
	if !strings.HasPrefix(got, want) {
		t.Errorf("marker %q, want %q", got[:len(want)], want)
	}
	if !strings.HasPrefix(kept, "line ") {
		t.Errorf("eviction cut a line: %q", kept)
	}
}

func TestTail(t *testing.T) {
	b, _ := New(0, "")
	if b.Tail(5) != "" {
		t.Error("empty tail")
	}
	b.WriteString("a\nb\nc")
	for n, want := range map[int]string{0: "", 1: "c", 2: "b\nc", 3: "a\nb\nc", 9: "a\nb\nc"} {
		if got := b.Tail(n); got != want {
			t.Errorf("Tail(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestWait(t *testing.T) {
	b, _ := New(0, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int, 1)
	go func() {
		n, err := b.Wait(ctx, 0)
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()
	b.WriteString("hello\n")
	if n := <-got; n != 6 {
		t.Errorf("Wait returned %d", n)
	}
	// Already past the offset: no blocking.
	if n, err := b.Wait(ctx, 3); err != nil || n != 6 {
		t.Errorf("Wait(3) = %d %v", n, err)
	}
	// Cancelled context.
	c2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := b.Wait(c2, 6); err != context.Canceled {
		t.Errorf("Wait on a cancelled ctx: %v", err)
	}
	// Close wakes waiters.
	done := make(chan error, 1)
	go func() { _, err := b.Wait(ctx, 6); done <- err }()
	b.Close()
	select {
	case err := <-done:
		if err != ErrClosed {
			t.Errorf("Wait after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the waiter")
	}
}

// TestConcurrent: writers and readers at once (run with -race); a watcher that follows
// offsets with Wait sees every byte exactly once.
func TestConcurrent(t *testing.T) {
	b, _ := New(512, filepath.Join(t.TempDir(), "log"))
	var seen strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		off := 0
		for {
			n, err := b.Wait(context.Background(), off)
			seen.WriteString(b.Since(off)[:n-off])
			off = n
			if err != nil {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				b.WriteString("0123456789\n")
				b.Tail(2)
				b.Len()
			}
		}()
	}
	wg.Wait()
	b.Close()
	<-done
	if seen.Len() != 4*200*11 || seen.String() != b.Since(0) {
		t.Errorf("watcher saw %d bytes, log has %d", seen.Len(), b.Len())
	}
}
