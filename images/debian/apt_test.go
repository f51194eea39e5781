package debian

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The root's architectures come from its caller (the recipes): apt.conf lists them, and
// lists fetched for other architectures are stale however young.
func TestRootArchitectures(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "sources.list")
	os.WriteFile(src, []byte("deb http://mirror.example/debian bookworm main\n"), 0o644)
	if err := (&Root{Dir: filepath.Join(dir, "none"), Sources: src}).Init(); err == nil || !strings.Contains(err.Error(), "no architectures") {
		t.Errorf("a root without architectures: %v", err)
	}
	r := &Root{Dir: filepath.Join(dir, "apt"), Sources: src, Architectures: []string{"amd64", "arm64", "armhf"}}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(r.conf())
	if !strings.Contains(string(conf), `APT::Architectures { "amd64"; "arm64"; "armhf"; };`) {
		t.Errorf("apt.conf:\n%s", conf)
	}
	if r.fresh() {
		t.Error("no stamp: not fresh")
	}
	os.WriteFile(r.stamp(), nil, 0o644) // an update by a kmodlab that named no architectures
	if r.fresh() {
		t.Error("a stamp without the architectures must not count as fresh")
	}
	os.WriteFile(r.stamp(), r.stampText(), 0o644)
	if !r.fresh() {
		t.Error("a young stamp for these architectures is fresh")
	}
	r2 := &Root{Dir: r.Dir, Architectures: []string{"amd64", "armhf"}}
	if r2.fresh() {
		t.Error("lists fetched for other architectures are stale")
	}
	old := time.Now().Add(-25 * time.Hour)
	os.Chtimes(r.stamp(), old, old)
	if r.fresh() {
		t.Error("a stamp older than a day is stale")
	}
}
