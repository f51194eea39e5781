package main

import "testing"

// --set takes one key=value per flag, and the value may hold commas; --pin keeps its
// comma list.
func TestParseKV(t *testing.T) {
	m, err := parseKV([]string{"stress=1s,2s", "args=a=b"}, "--set", false)
	if err != nil || len(m) != 2 || m["stress"] != "1s,2s" || m["args"] != "a=b" {
		t.Errorf("--set: %v %v", m, err)
	}
	m, err = parseKV([]string{"image=ab,module=cd"}, "--pin", true)
	if err != nil || len(m) != 2 || m["image"] != "ab" || m["module"] != "cd" {
		t.Errorf("--pin: %v %v", m, err)
	}
	if _, err := parseKV([]string{"a=1", "a=2"}, "--set", false); err == nil {
		t.Error("a key given twice is accepted")
	}
}
