package kmsg

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

func TestParse(t *testing.T) {
	r, err := Parse(`6,1234,224968247,-;userblk0: read1  00000002 0000000000001000 x\x0ay\x01`)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 1234 || r.TS != 224968247 || r.Level != 6 || r.Text != "userblk0: read1  00000002 0000000000001000 x\\x0ay\\x01" {
		t.Errorf("%+v", r)
	}
	if got := r.Line(); got != "[  224.968247] "+r.Text {
		t.Errorf("line %q", got)
	}
	if r, _ := Parse(`4,1,2,-;a\x09b\x5cc`); r.Text != "a\tb\\c" {
		t.Errorf("unescape: %q", r.Text)
	}
	for _, bad := range []string{"", "no semicolon", "6,x,1,-;t", "6,1;t"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// A window counts exactly the records after its start and every record the ring
// buffer dropped, at the start or in between.
func TestWindowGaps(t *testing.T) {
	w := NewWindow(100)
	for _, s := range []uint64{99, 100, 101, 102, 105, 106, 110} {
		w.Add(Record{Seq: s, TS: int64(s)})
	}
	if w.Records != 5 || w.Lost != 5 || len(w.Gaps) != 2 || w.Last() != 110 || w.FirstTS != 101 {
		t.Fatalf("%+v", w)
	}
	if w.Gaps[0] != (Gap{After: 102, Missing: 2}) || w.Gaps[1] != (Gap{After: 106, Missing: 3}) {
		t.Errorf("gaps %+v", w.Gaps)
	}
	w = NewWindow(10)
	w.Add(Record{Seq: 15})
	if w.Lost != 4 || w.Gaps[0].After != 10 {
		t.Errorf("lost start: %+v", w)
	}
}

func TestBuildAgent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	dir := t.TempDir()
	bin, err := BuildAgent(context.Background(), dir, "arm", "7")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(bin)
	if err != nil || st.Size() == 0 {
		t.Fatal(err)
	}
	again, err := BuildAgent(context.Background(), dir, "arm", "7")
	if err != nil || again != bin {
		t.Errorf("not cached: %s %v", again, err)
	}
}
