package qemu

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
)

func keyFor(t *testing.T, mut func(*Spec, *string, *string)) string {
	t.Helper()
	x, err := images.Lookup("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Target: x, Kernel: "/c/images/x/vmlinux", Initrd: "/c/images/x/initramfs.cpio", Accel: AccelTCG, SSHPort: 2222, QMP: "/tmp/a/qmp.sock"}
	hash, qemu := "img1", "QEMU emulator version 7.2.22 | /usr/bin/qemu-system-x86_64 1 2"
	if mut != nil {
		mut(&spec, &hash, &qemu)
	}
	return snapshotKeyInput(spec, hash, qemu).Key()
}

// TestSnapshotKey: the per-machine parts (SSH host port, QMP socket) do not change the
// key; the image, QEMU and every machine argument do.
func TestSnapshotKey(t *testing.T) {
	base := keyFor(t, nil)
	if k := keyFor(t, func(s *Spec, _, _ *string) { s.SSHPort = 40123; s.QMP = "/tmp/other/qmp.sock" }); k != base {
		t.Errorf("another port or QMP socket changed the key")
	}
	for name, mut := range map[string]func(*Spec, *string, *string){
		"image hash":   func(_ *Spec, h, _ *string) { *h = "img2" },
		"qemu version": func(_ *Spec, _, q *string) { *q = "QEMU emulator version 8.0 | /usr/bin/qemu-system-x86_64 1 2" },
		"qemu binary":  func(_ *Spec, _, q *string) { *q = "QEMU emulator version 7.2.22 | /usr/bin/qemu-system-x86_64 1 3" },
		"memory":       func(s *Spec, _, _ *string) { s.MemoryMB = 4096 },
		"smp":          func(s *Spec, _, _ *string) { s.SMP = 1 },
		"append":       func(s *Spec, _, _ *string) { s.Append = "nokaslr" },
		"accel":        func(s *Spec, _, _ *string) { s.Accel = AccelKVM },
		"kernel path":  func(s *Spec, _, _ *string) { s.Kernel = "/c/images/y/vmlinux" },
	} {
		if keyFor(t, mut) == base {
			t.Errorf("changing the %s kept the key", name)
		}
	}
}

func writeSnap(t *testing.T, s snapshot, body string, metaBytes int64, key string) {
	t.Helper()
	os.MkdirAll(s.dir, 0o755)
	if err := os.WriteFile(s.file(), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(snapshotMeta{Key: key, Input: s.input, Bytes: metaBytes})
	if err := os.WriteFile(s.meta(), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotExists: a state counts only with its metadata, naming its key and size
// (a state cut short by a crash while saving, or metadata of another key, does not).
func TestSnapshotExists(t *testing.T) {
	x, _ := images.Lookup("x86_64")
	in := snapshotKeyInput(Spec{Target: x, Accel: AccelTCG}, "h", "q")
	s := snapshot{dir: t.TempDir(), input: in, key: in.Key()}
	if s.exists() {
		t.Fatal("nothing saved yet")
	}
	writeSnap(t, s, "state", 5, s.key)
	if !s.exists() {
		t.Fatal("complete state not found")
	}
	writeSnap(t, s, "stat", 5, s.key)
	if s.exists() {
		t.Error("a truncated state counts")
	}
	writeSnap(t, s, "state", 5, "otherkey")
	if s.exists() {
		t.Error("metadata of another key counts")
	}
	os.Remove(s.meta())
	if s.exists() {
		t.Error("a state without metadata counts")
	}
	writeSnap(t, s, "state", 5, s.key)
	s.remove()
	if _, err := os.Stat(s.file()); !os.IsNotExist(err) {
		t.Error("remove left the state")
	}
}

// TestPruneSnapshots keeps the newest states of one target and leaves other targets alone.
func TestPruneSnapshots(t *testing.T) {
	dir := t.TempDir()
	x, _ := images.Lookup("x86_64")
	a, _ := images.Lookup("armv7-lpae")
	var xs []snapshot
	for i := 0; i < 5; i++ {
		in := snapshotKeyInput(Spec{Target: x, Accel: AccelTCG, MemoryMB: 1000 + i}, "h", "q")
		s := snapshot{dir: dir, input: in, key: in.Key()}
		writeSnap(t, s, "x", 1, s.key)
		old := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(s.meta(), old, old)
		xs = append(xs, s)
	}
	in := snapshotKeyInput(Spec{Target: a, Accel: AccelTCG}, "h", "q")
	arm := snapshot{dir: dir, input: in, key: in.Key()}
	writeSnap(t, arm, "x", 1, arm.key)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(arm.meta(), old, old)
	pruneSnapshots(xs[4])
	for i, s := range xs {
		if want := i >= 5-snapshotKeep; s.exists() != want {
			t.Errorf("state %d: exists %v, want %v", i, s.exists(), want)
		}
	}
	if !arm.exists() {
		t.Error("pruning x86_64 removed the armv7-lpae state")
	}
}

func TestSnapshotsEnabled(t *testing.T) {
	t.Setenv(EnvNoSnapshot, "")
	if !SnapshotsEnabled(Config{}) {
		t.Error("snapshots are on by default")
	}
	if SnapshotsEnabled(Config{NoSnapshot: true}) {
		t.Error("NoSnapshot ignored")
	}
	t.Setenv(EnvNoSnapshot, "1")
	if SnapshotsEnabled(Config{}) {
		t.Error(EnvNoSnapshot + "=1 ignored")
	}
}

func TestSnapshotDirDefault(t *testing.T) {
	img := &images.Image{Dir: "/c/kmodlab/images/x86_64-abc"}
	if d := snapshotDir(Config{Image: img}); d != "/c/kmodlab/snapshots" {
		t.Errorf("default snapshot dir %s", d)
	}
	if d := snapshotDir(Config{Image: img, SnapshotDir: "/s"}); d != "/s" {
		t.Errorf("explicit snapshot dir %s", d)
	}
}
