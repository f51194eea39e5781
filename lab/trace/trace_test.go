package trace

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testdata is the content of testdata/name.
func testdata(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestSeedTable(t *testing.T) {
	res := AnalyzeString(string(testdata(t, "seed.log")))
	if res.Transactions != 5 { // a2d (write without daemon view), b40, c49, d4f, e53
		t.Fatalf("transactions = %d, want 5", res.Transactions)
	}
	if res.Reads != 4 {
		t.Errorf("reads with both views = %d, want 4", res.Reads)
	}
	if len(res.Divergences) != 1 {
		t.Fatalf("divergences = %+v, want exactly c49", res.Divergences)
	}
	d := res.Divergences[0]
	if d.Xid != 0xc49 || d.Kind != KindNeverArrived {
		t.Errorf("got %x %q, want c49 %q", d.Xid, d.Kind, KindNeverArrived)
	}
	if !strings.Contains(d.Detail, "9b5eeca2") || !strings.Contains(d.Detail, "10e5cad0") {
		t.Errorf("detail lacks both crcs: %s", d.Detail)
	}
	tab := Table(d.Events)
	if !strings.Contains(tab, "read2:  00000c49 000000000001d000 0000000000001000 000000009b5eeca2 88314387 31417") {
		t.Errorf("table does not print like the seed:\n%s", tab)
	}
}

func TestRecordedGuestLog(t *testing.T) {
	// kern.log of i386-pae, map_mode=atomic, blkstress odirect (recorded from a real guest).
	f, err := os.Open("testdata/i386-pae-atomic.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Analyze(f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reads < 100 || res.Diverged() == 0 {
		t.Fatalf("reads=%d diverged=%d: the recorded atomic-mode log must diverge", res.Reads, res.Diverged())
	}
	for _, d := range res.Divergences[:1] {
		if d.Events[0].Mode != "atomic" || d.Events[0].CPU < 0 || d.Events[0].Disk != "userblk0" {
			t.Errorf("fields not parsed: %+v", d.Events[0])
		}
	}
}

func TestNoiseAndInterleaving(t *testing.T) {
	log := strings.Join([]string{
		"Nov 24 15:47:43 kmodlab kernel: [   11.1] userblk: loaded, map_mode=kmap trace=1",
		"[   12.000001] userblk0: read0  00000001 0000000000000000 0000000000001000 00000000aaaaaaaa ffefe000 10 cpu=0 mode=kmap",
		"[   12.000002] userblk0: read0  00000002 0000000000001000 0000000000001000 00000000bbbbbbbb ffefd000 11 cpu=1 mode=kmap",
		"[   12.000003] random driver: something else 00000001",
		"<6>[   12.000004] userblk0: read1  00000002 0000000000001000 0000000000001000 00000000cccccccc ffefd000 20 cpu=2 mode=kmap",
		"[   12.000005] userblk0: read1  00000001 0000000000000000 0000000000001000 00000000dddddddd ffefe000 20 cpu=2 mode=kmap",
		"[   12.000006] userblk0: read2  00000002 0000000000001000 0000000000001000 00000000cccccccc ffefd000 11 cpu=1 mode=kmap",
		"[   12.000007] userblk0: read2  00000001 0000000000000000 0000000000001000 00000000dddddddd ffefe000 10 cpu=0 mode=kmap",
		"[   12.000008] userblk0: read2  00000003 0000000000000000 00000000000",
		"[   12.000009] userblk1: read1  00000001 0000000000000000 0000000000001000 0000000011111111 ffefe000 30 cpu=2 mode=atomic",
		"[   12.000010] userblk1: read2  00000001 0000000000000000 0000000000001000 0000000022222222 ffefe000 31 cpu=0 mode=atomic",
		"[   12.000011] userblk1: write  00000002 0000000000000000 0000000000001000 0000000033333333 ffefe000 31 cpu=0 mode=atomic",
		"[   12.000012] userblk1: write1 00000002 0000000000000000 0000000000001000 0000000044444444 ffefe000 30 cpu=2 mode=atomic",
	}, "\n")
	res := AnalyzeString(log)
	if res.Unparsed != 1 {
		t.Errorf("unparsed = %d, want 1 (the truncated read2)", res.Unparsed)
	}
	if res.Transactions != 4 {
		t.Errorf("transactions = %d, want 4 (disks are separate)", res.Transactions)
	}
	if len(res.Divergences) != 2 {
		t.Fatalf("divergences = %d, want 2: %+v", len(res.Divergences), res.Divergences)
	}
	// Neither closes early (no read3, no write2): both are judged at the end, in order.
	if res.Divergences[0].Disk != "userblk1" || res.Divergences[0].Kind != KindCrossThread {
		t.Errorf("first = %+v", res.Divergences[0])
	}
	if res.Divergences[1].Disk != "userblk1" || res.Divergences[1].Kind != KindWriteMismatch {
		t.Errorf("second = %+v", res.Divergences[1])
	}
}

func FuzzAnalyze(f *testing.F) {
	f.Add(string(testdata(f, "seed.log")))
	f.Add("userblk0: read1  00000001 0000000000000000 0000000000001000 00000000dddddddd ffefe000 20 cpu=2 mode=kmap\n")
	f.Add("read2: ffffffffffffffff ffffffffffffffff ffffffffffffffff ffffffffffffffff 99999999")
	f.Fuzz(func(t *testing.T, s string) {
		res := AnalyzeString(s)
		if res.Diverged()+res.IntegrityTotal > res.Transactions || res.Reads+res.Writes > res.Transactions ||
			len(res.Divergences) > Keep || len(res.DivergenceTS) != min(res.Diverged(), MaxTimes) {
			t.Fatalf("inconsistent counts: %+v", res)
		}
		for _, d := range res.Divergences {
			if len(d.Events) == 0 || d.Kind == "" {
				t.Fatalf("empty divergence: %+v", d)
			}
			_ = Table(d.Events)
		}
	})
}

func BenchmarkAnalyze(b *testing.B) {
	data := testdata(b, "i386-pae-atomic.log")
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		AnalyzeString(string(data))
	}
}

// BenchmarkAnalyze50MB streams a 50 MB kernel log in which every read transaction
// diverges (the worst case for memory) and reports throughput and the peak heap.
func BenchmarkAnalyze50MB(b *testing.B) {
	file := filepath.Join(b.TempDir(), "kern.log")
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	size := 0
	for x := 1; size < 50<<20; x++ {
		for _, l := range read(uint64(x), 0x11111111, 0x22222222, "atomic", "0badcafe") {
			n, _ := fmt.Fprintln(w, l)
			size += n
		}
	}
	w.Flush()
	f.Close()
	b.SetBytes(int64(size))
	b.ResetTimer()
	var peak uint64
	for i := 0; i < b.N; i++ {
		runtime.GC()
		stop := make(chan struct{})
		done := make(chan uint64)
		go func() {
			var m runtime.MemStats
			var p uint64
			for {
				runtime.ReadMemStats(&m)
				p = max(p, m.HeapInuse)
				select {
				case <-stop:
					done <- p
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		in, _ := os.Open(file)
		res, err := Analyze(in)
		in.Close()
		close(stop)
		peak = max(peak, <-done)
		if err != nil || res.Diverged() == 0 {
			b.Fatalf("%v %d", err, res.Diverged())
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}
