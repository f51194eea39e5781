package board

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	f := filepath.Join(t.TempDir(), "runners.yaml")
	os.WriteFile(f, []byte(text), 0o644)
	return f
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"boards:\n  - name: a\n    address: x\n    identity: k\n    arch: arm\n", "board a: host_key: missing"},
		{"boards:\n  - name: a\n    address: x\n    identity: k\n    host_key: SHA256:x\n", "board a: arch: missing"},
		{"boards:\n  - name: a\n    address: x\n    identity: k\n    host_key: SHA256:x\n    arch: arm\n    build: magic\n", `build: "magic"`},
		{"boards:\n  - name: a\n    adress: x\n", "field adress not found"},
	} {
		if _, err := Load(write(t, tc.text), t.TempDir()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

func TestLabelsQuarantineAndSlots(t *testing.T) {
	cfg, err := Load(write(t, `boards:
  - {name: pi-a, labels: [pi4], address: a, identity: k, host_key: "SHA256:x", arch: arm}
  - {name: pi-b, labels: [pi4], address: b, identity: k, host_key: "SHA256:x", arch: arm}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Match("pi4")); n != 2 {
		t.Fatalf("label matches %d", n)
	}
	b, _ := cfg.Pick("pi4")
	if b.Name != "pi-a" || b.Port != 22 || b.User != "root" || b.GOARM != "7" || b.MaxJobs != 1 || b.Build != "native" {
		t.Errorf("defaults: %+v", b)
	}
	b.SetQuarantine("no headers")
	if p, _ := cfg.Pick("pi4"); p.Name != "pi-b" {
		t.Errorf("picked a quarantined board")
	}
	cfg.Boards[1].SetQuarantine("down")
	if _, err := cfg.Pick("pi4"); err == nil || !strings.Contains(err.Error(), "no headers") {
		t.Errorf("all quarantined: %v", err)
	}
	b.SetQuarantine("")
	if p, err := cfg.Pick("pi-a"); err != nil || p != b {
		t.Errorf("released board: %v", err)
	}
	// max_jobs 1: a second holder waits until the first lets go.
	s1, err := b.acquireSlot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := b.acquireSlot(ctx); err == nil {
		t.Fatal("a second job got the only slot")
	}
	s1.Close()
	s2, err := b.acquireSlot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}
