package main

import (
	"github.com/kmodlab/kmodlab/stressreport"
	"testing"
)

func TestPatternAndDescribe(t *testing.T) {
	a := make([]byte, blockSize)
	b := make([]byte, blockSize)
	fill(a, 7, 12, 3)
	fill(b, 7, 12, 3)
	if string(a) != string(b) {
		t.Fatal("the same seed, block and generation must give the same bytes")
	}
	if got := describe(a); got != "block 12 gen 3" {
		t.Errorf("describe = %q", got)
	}
	fill(b, 7, 12, 4)
	if string(a) == string(b) {
		t.Fatal("generations must differ")
	}
	b[100] ^= 1
	if got := describe(b); got != "block 12 gen 4 (torn: payload crc wrong)" {
		t.Errorf("torn: %q", got)
	}
	if describe(make([]byte, blockSize)) != "zeros" {
		t.Error("zeros")
	}
}

func TestCheckFindsWrongBlock(t *testing.T) {
	s := &state{rep: &stressreport.Report{FirstMS: -1}, o: opts{seed: 7}}
	got := make([]byte, blockSize)
	fill(got, 7, 99, 1) // block 99's data where block 12 should be
	check(s, got, "", 12, 12*blockSize, 1, 0, 0)
	if s.rep.Mismatches != 1 || s.details[0].Holds != "block 99 gen 1" {
		t.Fatalf("%+v", s.rep)
	}
	fill(got, 7, 12, 1)
	check(s, got, "", 12, 12*blockSize, 1, 0, 0)
	check(s, got, "", 12, 12*blockSize, unknownGen, 0, 0)
	if s.rep.Mismatches != 1 {
		t.Error("a correct block or one of unknown contents is not a mismatch")
	}
}

func TestParseCPUs(t *testing.T) {
	got, err := parseCPUs("0-2,5", 8)
	if err != nil || len(got) != 4 || got[3] != 5 {
		t.Errorf("%v %v", got, err)
	}
	for _, bad := range []string{"a", "3-1", "2048"} {
		if _, err := parseCPUs(bad, 8); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if d, _ := parseCPUs("", 8); len(d) == 0 {
		t.Error("default CPU list is empty")
	}
}
