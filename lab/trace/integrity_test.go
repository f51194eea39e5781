package trace

import (
	"fmt"
	"strings"
	"testing"
)

// line builds one userblk trace line.
func line(op string, xid, pos uint64, crc uint32, addr string, tid, cpu int, mode, dev string) string {
	s := fmt.Sprintf("[   12.%06d] userblk0: %-6s %08x %016x %016x %016x %s %d cpu=%d mode=%s", tid, op, xid, pos, 4096, crc, addr, tid, cpu, mode)
	if dev != "" {
		s += " dev=" + dev
	}
	return s
}

func read(xid uint64, c1, c2 uint32, mode, dev string) []string {
	return []string{
		line("read0", xid, 0x1000, 0xaaaaaaaa, "ffeee000", 10, 0, mode, dev),
		line("read1", xid, 0x1000, c1, "ffeee000", 20, 3, mode, dev),
		line("read2", xid, 0x1000, c2, "ffeee000", 10, 0, mode, dev),
		line("readx", xid, 0x1000, c1, "ffeee000", 20, 3, mode, dev),
		line("read3", xid, 0x1000, c2, "ffeee000", 10, 0, mode, dev),
	}
}

func join(parts ...[]string) string {
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	return strings.Join(all, "\n")
}

// Every disk's xids restart at 1: with dev= ids, one disk's diverging xid 1 is never
// merged with another disk's clean xid 1, even when both print as userblk0.
func TestXidReuseAcrossInstances(t *testing.T) {
	log := join(read(1, 0x11111111, 0x22222222, "atomic", "0badcafe"), read(1, 0x33333333, 0x33333333, "kmap", "feedf00d"))
	res := AnalyzeString(log)
	if res.Transactions != 2 || res.Diverged() != 1 || res.IntegrityTotal != 0 {
		t.Fatalf("transactions=%d diverged=%d integrity=%d, want 2, 1, 0", res.Transactions, res.Diverged(), res.IntegrityTotal)
	}
	if d := res.Divergences[0]; d.Dev != "0badcafe" || d.Events[0].Mode != "atomic" {
		t.Errorf("the divergence belongs to the atomic disk: %+v", d)
	}
	// Without dev= (old lines) the two would be one transaction with conflicting lines:
	// an integrity error, never a divergence of the kmap disk.
	a, b := read(1, 0x11111111, 0x22222222, "atomic", ""), read(1, 0x33333333, 0x33333333, "atomic", "")
	res = AnalyzeString(join(a[:3], b, a[3:]))
	if res.Diverged() != 0 || res.IntegrityTotal != 1 || res.Problems[0].Kind != IntegrityDuplicate {
		t.Errorf("merged instances: diverged=%d integrity=%d %+v", res.Diverged(), res.IntegrityTotal, res.Problems)
	}
}

func TestFieldsMustAgree(t *testing.T) {
	r := read(7, 1, 2, "atomic", "01")
	r[2] = line("read2", 7, 0x2000, 2, "ffeee000", 10, 0, "atomic", "01") // other pos
	res := AnalyzeString(join(r))
	if res.Diverged() != 0 || res.IntegrityTotal != 1 || res.Problems[0].Kind != IntegrityDisagree {
		t.Fatalf("pos disagreement: diverged=%d problems=%+v", res.Diverged(), res.Problems)
	}
	r = read(7, 1, 2, "atomic", "01")
	r[2] = line("read2", 7, 0x1000, 2, "ffefd000", 10, 0, "atomic", "01") // other address
	res = AnalyzeString(join(r))
	if res.Diverged() != 0 || res.IntegrityTotal != 1 || !strings.Contains(res.Problems[0].Detail, "ffefd000") {
		t.Fatalf("address disagreement: diverged=%d problems=%+v", res.Diverged(), res.Problems)
	}
	// copier maps on each side itself: addresses may differ, and that is no problem.
	r = read(7, 5, 5, "copier", "01")
	r[1] = line("read1", 7, 0x1000, 5, "ffefd000", 20, 3, "copier", "01")
	res = AnalyzeString(join(r))
	if res.IntegrityTotal != 0 || res.Reads != 1 || res.Diverged() != 0 {
		t.Fatalf("copier: integrity=%d reads=%d diverged=%d", res.IntegrityTotal, res.Reads, res.Diverged())
	}
}

func TestConflictingAndIdenticalDuplicates(t *testing.T) {
	r := read(3, 1, 1, "kmap", "02")
	same := append(append([]string{}, r[:2]...), r[1]) // read1 printed twice, identically
	same = append(same, r[2:]...)
	res := AnalyzeString(join(same))
	if res.IntegrityTotal != 0 || res.Reads != 1 {
		t.Errorf("identical duplicate: integrity=%d reads=%d", res.IntegrityTotal, res.Reads)
	}
	conflict := append(append([]string{}, r[:2]...), line("read1", 3, 0x1000, 9, "ffeee000", 20, 3, "kmap", "02"))
	conflict = append(conflict, r[2:]...)
	res = AnalyzeString(join(conflict))
	if res.IntegrityTotal != 1 || res.Diverged() != 0 || res.Problems[0].Kind != IntegrityDuplicate {
		t.Errorf("conflicting duplicate: integrity=%d diverged=%d %+v", res.IntegrityTotal, res.Diverged(), res.Problems)
	}
}

func TestMergedLongAndUppercase(t *testing.T) {
	r := read(4, 0xABCDEF01, 0x12345678, "atomic", "03")
	merged := r[1] + " " + strings.TrimPrefix(r[2], "[   12.000010] ") // two records, one line
	up := "[   12.000010] userblk0: read0  00000004 0000000000001000 0000000000001000 00000000AAAAAAAA FFEEE000 10 cpu=0 mode=atomic dev=03"
	long := "[   13.000000] " + strings.Repeat("x", MaxLine+10)
	log := join([]string{up, merged, long}, r[3:])
	res, err := Analyze(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if res.Merged != 1 || res.Long != 1 {
		t.Errorf("merged=%d long=%d, want 1 and 1", res.Merged, res.Long)
	}
	if res.Events != 5 || res.Diverged() != 1 {
		t.Fatalf("events=%d diverged=%d, want 5 (upper-case and merged records read) and 1", res.Events, res.Diverged())
	}
	if e := res.Divergences[0].Events[0]; e.Op != "read0" || e.CRC != 0xaaaaaaaa || e.Dev != "03" {
		t.Errorf("upper-case line: %+v", e)
	}
}

func TestFaultSides(t *testing.T) {
	fault := func(side string) string {
		return line("write", 9, 0x1000, 1, "ffeee000", 10, 0, "local", "04") + "\n" +
			strings.Replace(line("wfault", 9, 0x1000, 0x800, "ffeee000", 20, 3, "local", "04"), " dev=04", " dev=04 side="+side, 1)
	}
	res := AnalyzeString(fault("kernel"))
	if res.Diverged() != 1 || res.Divergences[0].Kind != KindShortCopy || res.UserFaults != 0 {
		t.Errorf("kernel-side fault: diverged=%d user=%d", res.Diverged(), res.UserFaults)
	}
	res = AnalyzeString(fault("user"))
	if res.Diverged() != 0 || res.UserFaults != 1 || res.Writes != 1 {
		t.Errorf("user-side fault: diverged=%d user=%d writes=%d", res.Diverged(), res.UserFaults, res.Writes)
	}
}

func TestNoEventsAndStamps(t *testing.T) {
	res := AnalyzeString("\x00\x01binary\xff\nnothing here\n")
	if res.Events != 0 || res.Lines != 2 {
		t.Errorf("binary input: %+v", res)
	}
	if got := stamp("[  224.968247] userblk0: x"); got != 224968247 {
		t.Errorf("stamp = %d", got)
	}
	if got := stamp("no stamp"); got != -1 {
		t.Errorf("stamp = %d", got)
	}
	ev, ok := ParseLine(read(1, 1, 1, "kmap", "05")[0])
	if !ok || ev.TS != 12000010 || ev.Disk != "userblk0" || ev.CPU != 0 {
		t.Errorf("ParseLine = %+v %v", ev, ok)
	}
}

// Memory is bounded: transactions close when their last line arrives, old open ones
// are judged when MaxOpen is passed, and only Keep divergences are kept in full.
func TestStreamingBounds(t *testing.T) {
	a := NewAnalyzer()
	a.MaxOpen = 4
	var seen []uint64
	a.OnDivergence = func(d Divergence) {
		seen = append(seen, d.Xid)
		if d.Detail == "" { // the listener gets the sentence, kept in full or not
			t.Errorf("divergence %x reached the listener without its detail", d.Xid)
		}
	}
	for x := uint64(1); x <= 200; x++ {
		for _, l := range read(x, 1, 2, "atomic", "06") {
			a.Line(l)
		}
		if len(a.open) != 0 {
			t.Fatalf("xid %d: %d transactions still open after read3", x, len(a.open))
		}
	}
	for x := uint64(1000); x < 1010; x++ { // reads that never get read3
		for _, l := range read(x, 1, 2, "atomic", "06")[:3] {
			a.Line(l)
		}
	}
	if len(a.open) != 4 {
		t.Errorf("open = %d, want MaxOpen 4", len(a.open))
	}
	res := a.Finish()
	if res.Diverged() != 210 || len(res.Divergences) != Keep || len(seen) != 210 || len(res.DivergenceTS) != 210 {
		t.Fatalf("diverged=%d kept=%d callbacks=%d ts=%d", res.Diverged(), len(res.Divergences), len(seen), len(res.DivergenceTS))
	}
	if seen[0] != 1 || seen[199] != 200 || seen[200] != 1000 {
		t.Errorf("judged out of order: %v", seen[:3])
	}
}

// Judged transactions are reused, but never one the result still holds: the kept
// divergences and problems keep their own lines while thousands more pass through, and
// the divergence times stop at MaxTimes.
func TestReuseKeepsWhatIsKept(t *testing.T) {
	a := NewAnalyzer()
	for x := uint64(1); x <= 3; x++ { // conflicting duplicates: integrity problems
		ls := read(x, 1, 1, "kmap", "07")
		a.Line(ls[0])
		a.Line(strings.Replace(ls[0], "aaaaaaaa", "bbbbbbbb", 1))
		for _, l := range ls[1:] {
			a.Line(l)
		}
	}
	n := uint64(MaxTimes + 100)
	for x := uint64(10); x < 10+n; x++ {
		c2 := uint32(2)
		if x%2 == 0 {
			c2 = 1 // every other transaction is clean
		}
		for _, l := range read(x, 1, c2, "atomic", "07") {
			a.Line(l)
		}
		for _, l := range read(x+1<<20, 1, 2, "atomic", "07") {
			a.Line(l)
		}
	}
	res := a.Finish()
	if res.Diverged() != int(n+n/2) || len(res.DivergenceTS) != MaxTimes || len(res.Divergences) != Keep {
		t.Fatalf("diverged=%d ts=%d kept=%d", res.Diverged(), len(res.DivergenceTS), len(res.Divergences))
	}
	for _, d := range res.Divergences {
		if len(d.Events) != 5 || d.Detail == "" {
			t.Fatalf("kept divergence %x: %d events, detail %q", d.Xid, len(d.Events), d.Detail)
		}
		for _, e := range d.Events {
			if e.Xid != d.Xid {
				t.Fatalf("kept divergence %x holds a line of transaction %x: %s", d.Xid, e.Xid, e.Raw)
			}
		}
	}
	if len(a.free) == 0 {
		t.Error("no judged transaction was kept for reuse")
	}
	if len(res.Problems) != 3 || res.IntegrityTotal != 3 {
		t.Fatalf("problems = %d (%d)", len(res.Problems), res.IntegrityTotal)
	}
	for i, p := range res.Problems {
		if p.Xid != uint64(i+1) || len(p.Events) != 6 || p.Events[5].Xid != p.Xid || p.Kind != IntegrityDuplicate {
			t.Errorf("problem %d: %+v", i, p)
		}
	}
}

// The reuse pool is bounded: thousands of transactions judged at once (Finish)
// leave at most freeTx behind.
func TestReusePoolBounded(t *testing.T) {
	a := NewAnalyzer()
	for x := uint64(1); x <= 3*freeTx; x++ {
		for _, l := range read(x, 1, 1, "kmap", "08")[:3] { // no read3: they stay open
			a.Line(l)
		}
	}
	if len(a.open) != 3*freeTx {
		t.Fatalf("open = %d", len(a.open))
	}
	a.Finish()
	if len(a.free) != freeTx {
		t.Errorf("free = %d, want %d", len(a.free), freeTx)
	}
}

// write2 is the submitter's look after the daemon's copy: a page that changed under I/O
// (filesystem metadata does) is not a divergence; a submitter that still sees what it
// wrote while the daemon received other bytes is.
func TestWriteSecondLook(t *testing.T) {
	w := func(c0, c1, c2 uint32) string {
		return join([]string{
			line("write", 5, 0x4000, c0, "ffeee000", 10, 0, "kmap", "07"),
			line("write1", 5, 0x4000, c1, "ffeee000", 20, 1, "kmap", "07"),
			line("write2", 5, 0x4000, c2, "ffeee000", 10, 0, "kmap", "07"),
		})
	}
	res := AnalyzeString(w(1, 2, 2)) // the page changed: both see the new bytes
	if res.Diverged() != 0 || res.Unstable != 1 || res.Writes != 0 {
		t.Errorf("changed page: diverged=%d unstable=%d writes=%d", res.Diverged(), res.Unstable, res.Writes)
	}
	res = AnalyzeString(w(1, 2, 3)) // changed again: still nothing proven
	if res.Diverged() != 0 || res.Unstable != 1 {
		t.Errorf("changed twice: diverged=%d unstable=%d", res.Diverged(), res.Unstable)
	}
	res = AnalyzeString(w(1, 2, 1)) // the submitter still sees its bytes: stale mapping
	if res.Diverged() != 1 || res.Writes != 1 || !strings.Contains(res.Divergences[0].Detail, "still sees it") {
		t.Errorf("stale: diverged=%d writes=%d %+v", res.Diverged(), res.Writes, res.Divergences)
	}
	res = AnalyzeString(w(1, 1, 1))
	if res.Diverged() != 0 || res.Writes != 1 || res.Unstable != 0 {
		t.Errorf("clean write: %+v", res)
	}
	a := NewAnalyzer()
	for _, l := range strings.Split(w(1, 1, 1), "\n") {
		a.Line(l)
	}
	if len(a.open) != 0 {
		t.Errorf("a write closes at write2")
	}
}

// A read whose first look agrees (read1 = read2) but whose later look does not (readx,
// the daemon's second read, against read3, the submitter's) diverged too; without both
// later lines only the first look counts.
func TestLaterLookDiverges(t *testing.T) {
	r := read(9, 0x44444444, 0x44444444, "atomic", "02")
	r[3] = line("readx", 9, 0x1000, 0x55555555, "ffeee000", 20, 3, "atomic", "02")
	res := AnalyzeString(join(r))
	if res.Diverged() != 1 || res.Divergences[0].Kind != KindCrossThread || !strings.HasPrefix(res.Divergences[0].Detail, "later: ") {
		t.Fatalf("diverged=%d %+v, want one later cross-thread divergence", res.Diverged(), res.Divergences)
	}
	for _, drop := range []int{3, 4} { // no readx, or no read3
		r := read(9, 0x44444444, 0x44444444, "atomic", "02")
		r = append(r[:drop:drop], r[drop+1:]...)
		if res := AnalyzeString(join(r)); res.Diverged() != 0 || res.Reads != 1 {
			t.Errorf("without line %d: diverged=%d reads=%d, want 0 and 1", drop, res.Diverged(), res.Reads)
		}
	}
}
