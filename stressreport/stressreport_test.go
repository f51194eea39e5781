package stressreport

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseAndDetails(t *testing.T) {
	r, err := Parse([]byte(`{"tool":"blkstress","reads":3,"writes":4,"io_errors":1,"mismatches":1,"first_mismatch_ms":12,
		"details":[{"block":5,"want_crc":"aa","seen_crc":"bb","holds":"zeros"}]}`))
	if err != nil || r.Reads != 3 || r.IOErrors != 1 || r.FirstMS != 12 {
		t.Fatalf("%+v %v", r, err)
	}
	if m := r.BlockMismatches(); len(m) != 1 || m[0].Block != 5 || m[0].Holds != "zeros" {
		t.Errorf("blkstress details: %+v", m)
	}
	// A foreign tool's details are its own business: kept, not read as blocks.
	r, err = Parse([]byte(`{"mismatches":2,"details":{"lost":["x","y"]}}`))
	if err != nil || r.Mismatches != 2 || r.FirstMS != -1 || r.BlockMismatches() != nil || len(r.Details) == 0 {
		t.Errorf("foreign: %+v %v", r, err)
	}
	if r, _ := Parse([]byte(`{"details":[{"invariant":"two disks from one fd"}]}`)); r.BlockMismatches() != nil {
		t.Errorf("violations are not blocks")
	}
	if _, err := Parse([]byte(`{"mismatches":"many"}`)); err == nil {
		t.Errorf("a non-numeric count must be an error")
	}
	f := filepath.Join(t.TempDir(), "r.json")
	if err := (&Report{Tool: "x", Ops: 9, FirstMS: -1}).Write(f); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f)
	if r, err := Parse(data); err != nil || r.Ops != 9 || r.Tool != "x" {
		t.Errorf("round trip: %+v %v", r, err)
	}
}

func TestProgress(t *testing.T) {
	p := Progress{Reads: 10, Writes: 3, Ops: 2, IOErrors: 1, Mismatches: 4}
	got, ok := ParseProgress(p.Line() + "\r\n")
	if !ok || got != p {
		t.Fatalf("ParseProgress(%q) = %+v, %v", p.Line(), got, ok)
	}
	for _, l := range []string{"", "blkstress: odirect 1.0s", ProgressPrefix + "{", "x" + p.Line(), ProgressPrefix + `{"reads":"x"}`} {
		if _, ok := ParseProgress(l); ok {
			t.Errorf("ParseProgress(%q) took it", l)
		}
	}
}

func TestInterleavings(t *testing.T) {
	f := filepath.Join(t.TempDir(), "r.json")
	in := &Report{Tool: "userblkfuzz", FirstMS: -1, Interleavings: map[string]int64{TimeoutBusy: 12, TimeoutSent: 40, CompleteBusy: 9, CloseBusy: 10}}
	if err := in.Write(f); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f)
	r, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Unreached(FuzzInterleavings, 10)
	if len(got) != 2 || got[0] != CompleteBusy || got[1] != MidbioError {
		t.Errorf("Unreached = %v, want [complete_busy midbio_error]", got)
	}
	// A tool that writes none reaches none; a report without them stays valid.
	if r, _ := Parse([]byte(`{"mismatches":0}`)); len(r.Unreached(FuzzInterleavings, 1)) != len(FuzzInterleavings) {
		t.Error("a report without interleavings reached some")
	}
}
