package qemu

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/internal/cleanup"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func quietLog(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

// A key or image another user can read (ci-lab.sh's chmod -R a+rX left keys/id_ed25519
// 0644 and initramfs.cpio world-readable) is made private before use, with a warning.
func TestSecretsMadePrivate(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o755)
	os.Chmod(keys, 0o755)
	key := filepath.Join(keys, "id_ed25519")
	os.WriteFile(key, []byte("k"), 0o644)
	os.Chmod(key, 0o644)
	img := filepath.Join(dir, "images", "x")
	os.MkdirAll(img, 0o755)
	initrd := filepath.Join(img, "initramfs.cpio")
	os.WriteFile(initrd, []byte("c"), 0o644)
	os.Chmod(initrd, 0o644)
	var b strings.Builder
	if err := privateKey(keys, quietLog(&b)); err != nil {
		t.Fatal(err)
	}
	if err := privateImage(Config{Image: &images.Image{Dir: img, Initrd: initrd}}, quietLog(&b)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{keys: 0o700, key: 0o600, initrd: 0o600} {
		if got := mode(t, p); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
	if n := strings.Count(b.String(), "made private"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, b.String())
	}
	b.Reset()
	privateKey(keys, quietLog(&b))
	if b.Len() != 0 {
		t.Errorf("a private key warned: %s", b.String())
	}
}

// A saved machine state holds the guest's RAM (dropbear's host key in it): its temp
// file is created exclusively, 0600, in a 0700 directory, whatever the umask.
func TestSnapshotFilesArePrivate(t *testing.T) {
	x, _ := images.Lookup("x86_64")
	in := snapshotKeyInput(Spec{Target: x, Accel: AccelTCG}, "h", "q")
	s := snapshot{dir: filepath.Join(t.TempDir(), "snapshots"), input: in, key: in.Key()}
	os.MkdirAll(s.dir, 0o755)
	os.Chmod(s.dir, 0o755)
	tmp, err := s.createTemp(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, tmp); m != 0o600 {
		t.Errorf("temp state: mode %04o, want 0600", m)
	}
	if m := mode(t, s.dir); m != 0o700 {
		t.Errorf("snapshot dir: mode %04o, want 0700", m)
	}
	if !strings.HasPrefix(filepath.Base(tmp), filepath.Base(s.file())+".tmp-"+fmt.Sprint(os.Getpid())+"-") {
		t.Errorf("temp name %s", tmp)
	}
	os.WriteFile(s.file(), []byte("state"), 0o644)
	os.Chmod(s.file(), 0o644)
	if err := s.private(nil); err != nil || mode(t, s.file()) != 0o600 {
		t.Errorf("a saved state readable by others stays so (%v)", err)
	}
}

// Temp states whose writer is gone, or that are older than an hour, are removed; a
// fresh one of a live writer is kept.
func TestPruneTemps(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	name := func(n string) string { return filepath.Join(dir, "x86_64-abc.vmstate.tmp-"+n) }
	files := map[string]bool{ // name -> kept
		name(fmt.Sprintf("%d-aaaa", os.Getpid())): true,
		name("999999999-bbbb"):                    false, // no such process
		name("1234abcd"):                          true,  // older format, fresh
	}
	old := name(fmt.Sprintf("%d-cccc", os.Getpid()))
	files[old] = false
	for f := range files {
		os.WriteFile(f, nil, 0o600)
	}
	os.Chtimes(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour))
	pruneTemps(dir, now)
	for f, kept := range files {
		if _, err := os.Stat(f); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", filepath.Base(f), err == nil, kept)
		}
	}
}

// A second Ctrl-C exits at once: the emergency clean-up (internal/cleanup) must still
// kill a starting QEMU and remove its /tmp/kmodlab-qemu-* directory.
func TestEmergencyCleanup(t *testing.T) {
	work := t.TempDir()
	fake := filepath.Join(t.TempDir(), "qemu")
	os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755)
	initrd := filepath.Join(t.TempDir(), "initramfs.cpio")
	os.WriteFile(initrd, nil, 0o600)
	x, _ := images.Lookup("x86_64")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var b strings.Builder
	done := make(chan error, 1)
	go func() {
		_, err := start(ctx, Config{Image: &images.Image{Target: x, Kernel: "k", Initrd: initrd}, WorkDir: work}, fake, AccelTCG, quietLog(&b), "")
		done <- err
	}()
	var dirs []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if dirs, _ = filepath.Glob(filepath.Join(work, "kmodlab-qemu-*", "console.log")); len(dirs) > 0 {
			break
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no instance dir")
	}
	time.Sleep(100 * time.Millisecond) // QEMU started
	if n := cleanup.Now(); n != 1 {
		t.Errorf("%d emergency clean-ups, want 1", n)
	}
	if _, err := os.Stat(filepath.Dir(dirs[0])); err == nil {
		t.Errorf("%s left behind", filepath.Dir(dirs[0]))
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("start succeeded")
	}
}

// Private dirs of a kmodlab that no longer runs are removed at the next start; a live
// one's are kept.
func TestPruneWorkDirs(t *testing.T) {
	work := t.TempDir()
	dead, live := filepath.Join(work, "kmodlab-qemu-1"), filepath.Join(work, "kmodlab-qemu-2")
	os.MkdirAll(dead, 0o700)
	os.MkdirAll(live, 0o700)
	os.WriteFile(filepath.Join(dead, "owner"), []byte("999999999"), 0o600)
	os.WriteFile(filepath.Join(live, "owner"), []byte(fmt.Sprint(os.Getpid())), 0o600)
	pruneWorkDirs(work)
	if _, err := os.Stat(dead); err == nil {
		t.Error("a dead kmodlab's dir is kept")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("a live kmodlab's dir is removed")
	}
}
