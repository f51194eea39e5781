package trace

import (
	"errors"
	"strings"
	"testing"
)

func TestTokenHelpers(t *testing.T) {
	for _, tc := range []struct {
		s        string
		min, max int
		want     bool
	}{
		{"0", 1, 16, true}, {"", 1, 16, false}, {"0123456789abcdef", 1, 16, true}, {"0123456789abcdef0", 1, 16, false},
		{"ABCDEF", 1, 16, true}, {"g", 1, 1, false}, {"G", 1, 1, false}, {"/", 1, 1, false}, {":", 1, 1, false},
		{"@", 1, 1, false}, {"`", 1, 1, false}, {"1234567", 8, 16, false}, {"12345678", 8, 16, true}, {"f9", 2, 2, true},
	} {
		if got := isHex(tc.s, tc.min, tc.max); got != tc.want {
			t.Errorf("isHex(%q, %d, %d) = %v", tc.s, tc.min, tc.max, got)
		}
	}
	for _, tc := range []struct {
		s    string
		max  int
		want bool
	}{{"0", 9, true}, {"", 9, false}, {"123456789", 9, true}, {"1234567890", 9, false}, {"12a", 9, false}, {"/", 9, false}, {":", 9, false}, {"9", 1, true}} {
		if got := isDec(tc.s, tc.max); got != tc.want {
			t.Errorf("isDec(%q, %d) = %v", tc.s, tc.max, got)
		}
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{{"userblk0:", true}, {"userblk12:", true}, {"_9:", true}, {"Z9:", true}, {"a9:", true}, {"9:", true},
		{"userblk:", false}, {"userblk0", false}, {":", false}, {"x-1:", false}, {"a/1:", false}, {"a`1:", false}, {"a{1:", false}, {"a@1:", false}, {"a[1:", false}} {
		if got := isDiskToken(tc.s); got != tc.want {
			t.Errorf("isDiskToken(%q) = %v", tc.s, got)
		}
	}
	f := fields(" a\tbb  c\r\n")
	if len(f) != 3 || f[0] != (field{"a", 1}) || f[1] != (field{"bb", 3}) || f[2] != (field{"c", 7}) {
		t.Errorf("fields = %+v", f)
	}
	if len(fields("")) != 0 || len(fields("   ")) != 0 {
		t.Errorf("empty fields")
	}
}

func TestParseColumns(t *testing.T) {
	ev, ok := ParseLine("read2: 00000c49 000000000001d000 0000000000001000 000000009b5eeca2 88314387 31417")
	if !ok || ev.Disk != "" || ev.Addr != "88314387" || ev.TID != 31417 || ev.CPU != -1 || ev.Xid != 0xc49 || ev.Pos != 0x1d000 || ev.Len != 0x1000 || ev.CRC != 0x9b5eeca2 {
		t.Errorf("seed line: %+v %v", ev, ok)
	}
	ev, ok = ParseLine("write:  00000a2d 000000000001d000 0000000000001000 0000000010e5cad0          27240")
	if !ok || ev.Addr != "" || ev.TID != 27240 {
		t.Errorf("write without address: %+v", ev)
	}
	ev, ok = ParseLine("userblk3: write 1 2 3 4 77 cpu=2")
	if !ok || ev.Disk != "userblk3" || ev.TID != 77 || ev.CPU != 2 || ev.Addr != "" {
		t.Errorf("short columns: %+v %v", ev, ok)
	}
	if _, ok := ParseLine("userblk0: read1 1 2 3 100000000 ffeee000 5"); ok {
		t.Errorf("a crc over 32 bits must not parse on a read line")
	}
	if ev, ok := ParseLine("userblk0: rfault 1 2 3 100000000 ffeee000 5 side=kernel"); !ok || ev.CRC != 0x100000000 || ev.Side != "kernel" {
		t.Errorf("fault lines count bytes: %+v %v", ev, ok)
	}
	for _, bad := range []string{"userblk0: read1 1 2 3 4", "userblk0: read1 1 2 3 4 x", "userblk0: read1 1 2 3 4 ffeee000 cpu=1",
		"userblk0: read1 1 2 3 zz 5", "userblk0: read1 1 2 zz 4 5", "userblk0: read1 1 zz 3 4 5", "userblk0: read1 1 2 3 4 5 cpu=x",
		"userblk0: read1 1 2 3 4 1234567890"} {
		if ev, ok := ParseLine(bad); ok {
			t.Errorf("%q parsed: %+v", bad, ev)
		}
	}
	if ev, _ := ParseLine("userblk0: read1 1 2 3 4 5 cpu=1 mode=kmap dev=AB side=user junk=1 trailing words"); ev.Mode != "kmap" || ev.Dev != "ab" || ev.Side != "user" {
		t.Errorf("key=value fields: %+v", ev)
	}
	if ev, _ := ParseLine("userblk0: read1 1 2 3 4 5 cpu=1 text mode=kmap"); ev.Mode != "" {
		t.Errorf("fields after other text are not the line's: %+v", ev)
	}
	if st := opStarts("nothing to see"); st != nil {
		t.Errorf("opStarts = %v", st)
	}
	if st := opStarts("x read1"); len(st) != 0 {
		t.Errorf("an op at the end of a line starts nothing: %v", st)
	}
	if st := opStarts("userblk0: read1 1 userblk1: write 2"); len(st) != 2 || st[0] != (start{0, 10, 1}) || st[1] != (start{18, 28, 4}) {
		t.Errorf("opStarts = %v", st)
	}
}

func TestStamp(t *testing.T) {
	for s, want := range map[string]int64{
		"[    1.5] x":                     1500000,
		"[  224.968247] x":                224968247,
		"<6>[    2.000001] x":             2000001,
		strings.Repeat(" ", 65) + "[1.0]": -1,
		strings.Repeat(" ", 60) + "[1.0]": 1000000,
		"[1.0 x":                          -1,
		"[1] x":                           -1,
		"[a.1] x":                         -1,
		"[1.a] x":                         -1,
		"[1.1234567890] x":                -1,
	} {
		if got := stamp(s); got != want {
			t.Errorf("stamp(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestAnalyzerBookkeeping(t *testing.T) {
	a := NewAnalyzer()
	a.Keep = 1
	a.Line("[    5.000000] " + line("write", 1, 0, 1, "ffeee000", 1, 0, "atomic", "01")[15:])
	a.Record(9_000_000, "userblk0: write1 00000001 0000000000000000 0000000000001000 0000000000000002 ffeee000 2 cpu=1 mode=atomic dev=01")
	a.Record(10_000_000, "userblk0: write 00000002 0000000000000000 0000000000001000 0000000000000001 ffeef000 1 cpu=0 mode=local dev=01")
	a.Record(11_000_000, "userblk0: write1 00000002 0000000000000000 0000000000001000 0000000000000002 ffeef000 2 cpu=1 mode=local dev=01")
	a.Record(12_000_000, "userblk0: write 00000003 0000000000000000 0000000000001000 0000000000000001 aaaa0000 1 cpu=0 mode=kmap dev=01")
	a.Record(13_000_000, "userblk0: write1 00000003 0000000000000000 0000000000001000 0000000000000001 aaaa0000 2 cpu=1 mode=kmap dev=01")
	a.Record(14_000_000, "userblk0: write 00000004 0000000000000000 0000000000001000 0000000000000001 aaaa0000 1 cpu=0 mode=kmap dev=01")
	a.Record(15_000_000, "userblk0: write1 00000004 0000000000001000 0000000000001000 0000000000000001 aaaa0000 2 cpu=1 mode=kmap dev=01")
	a.Record(16_000_000, "userblk0: write 00000005 0000000000000000 0000000000001000 0000000000000001 aaaa0000 1 cpu=0 mode=kmap dev=01")
	a.Record(17_000_000, "userblk0: write1 00000005 0000000000002000 0000000000001000 0000000000000001 aaaa0000 2 cpu=1 mode=kmap dev=01")
	snap := a.Snapshot()
	res := a.Finish()
	if res.Lines != 10 || res.Events != 10 || res.Transactions != 5 || res.Writes != 3 {
		t.Errorf("counts %+v", res)
	}
	if res.FirstTS != 5_000_000 || res.LastTS != 17_000_000 {
		t.Errorf("timestamps %d %d", res.FirstTS, res.LastTS)
	}
	if res.Diverged() != 2 || len(res.Divergences) != 1 || res.Kinds[KindWriteMismatch] != 2 || len(res.DivergenceTS) != 2 || res.DivergenceTS[1] != 10_000_000 || res.DivergenceTS[0] != 5_000_000 {
		t.Errorf("divergences %d kept %d kinds %v ts %v", res.Diverged(), len(res.Divergences), res.Kinds, res.DivergenceTS)
	}
	if res.IntegrityTotal != 2 || len(res.Problems) != 1 {
		t.Errorf("problems %d kept %d", res.IntegrityTotal, len(res.Problems))
	}
	// The handed-over pages of the modes that hand a CPU-local mapping over, once each.
	if len(res.HandedPages) != 2 || res.HandedPages[0] != 0xffeee000 || res.HandedPages[1] != 0xffeef000 {
		t.Errorf("handed pages %x", res.HandedPages)
	}
	snap.Kinds["x"] = 1
	if res.Kinds["x"] != 0 {
		t.Errorf("Snapshot shares its map")
	}
}

type failing struct{ n int }

func (f *failing) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, "userblk0: read0 1 2 3 4 5\n"), nil
	}
	return 0, errors.New("disk on fire")
}

func TestReadLines(t *testing.T) {
	mid := strings.Repeat("y", 300*1024) // over the reader's buffer, under MaxLine
	huge := strings.Repeat("z", MaxLine+1)
	var got []string
	longs := 0
	err := ReadLines(strings.NewReader("a\r\n"+mid+"\n"+huge+"\nb\n"+huge+"\nlast"), func(l string) { got = append(got, l) }, func() { longs++ })
	if err != nil || len(got) != 4 || got[0] != "a" || got[1] != mid || got[2] != "b" || got[3] != "last" || longs != 2 {
		t.Fatalf("err=%v lines=%d longs=%d", err, len(got), longs)
	}
	res, err := Analyze(&failing{n: 2})
	if err == nil || res.Events != 2 {
		t.Errorf("a read error must surface with what was read: %v %+v", err, res)
	}
}

func TestTable(t *testing.T) {
	evs := []Event{{Op: "read3", CPU: -1, Addr: "a"}, {Op: "read0", CPU: 2}, {Op: "read1", CPU: 0}}
	tab := strings.Split(strings.TrimSpace(Table(evs)), "\n")
	if len(tab) != 4 || !strings.HasPrefix(tab[1], "read0:") || !strings.HasPrefix(tab[2], "read1:") || !strings.HasPrefix(tab[3], "read3:") {
		t.Fatalf("%q", tab)
	}
	if !strings.HasSuffix(tab[1], " 2") || !strings.HasSuffix(tab[2], " 0") || strings.HasSuffix(tab[3], "-1") {
		t.Errorf("cpu column: %q", tab)
	}
	if !strings.Contains(tab[1], strings.Repeat(" ", 8)) {
		t.Errorf("a missing address is blank: %q", tab[1])
	}
}

// FormatLine is ParseLine's inverse, and prints what the kernel's format string does.
func TestFormatLine(t *testing.T) {
	ev := Event{Disk: "userblk0", Op: "read1", Xid: 0x1c, Pos: 0x2000, Len: 0x1000, CRC: 0xdeadbeef,
		Addr: "ffeee000", TID: 812, CPU: 1, Mode: "atomic", Dev: "0badcafe", TS: -1}
	s := FormatLine(ev)
	want := "userblk0: read1  0000001c 0000000000002000 0000000000001000 00000000deadbeef ffeee000 812 cpu=1 mode=atomic dev=0badcafe"
	if s != want {
		t.Fatalf("FormatLine =\n%q, want\n%q", s, want)
	}
	got, ok := ParseLine(s)
	ev.Raw = s
	if !ok || got != ev {
		t.Fatalf("ParseLine(FormatLine) = %+v %v, want %+v", got, ok, ev)
	}
	ev.CPU = 0
	if s := FormatLine(ev); !strings.Contains(s, " 812 cpu=0 mode=") {
		t.Errorf("cpu 0 = %q", s)
	}
	f := Event{Op: "wfault", Xid: 2, Len: 0x1000, CRC: 0x800, TID: 5, CPU: -1, Side: "kernel", TS: -1}
	if s := FormatLine(f); s != "wfault 00000002 0000000000000000 0000000000001000 0000000000000800 5 side=kernel" {
		t.Errorf("fault line = %q", s)
	}
}
