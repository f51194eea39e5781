//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/machine/qemu"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/stressreport"
)

// cellOnGuest is a short cell: userblk in copier mode served by the daemon, two seconds
// of verified O_DIRECT I/O; it returns the stress report.
func cellOnGuest(t *testing.T, ctx context.Context, g *qemu.Guest) stressreport.Report {
	t.Helper()
	script := `set -e
insmod /root/userblk.ko map_mode=copier
(setsid /root/userblkd -size 32M > /root/d.log 2>&1 < /dev/null &)
for i in $(seq 50); do test -b /dev/userblk0 && break; sleep 0.2; done
/root/blkstress -duration 2s -seed 5 -json /root/s.json > /root/s.log 2>&1
cat /root/s.json`
	out, err := runner.Output(ctx, g, script)
	if err != nil {
		t.Fatalf("cell: %v\n%s", err, out)
	}
	var r stressreport.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stress report: %v\n%s", err, out)
	}
	return r
}

// TestSnapshotBoot: a cold boot saves the machine state; a machine restored from it (on
// another SSH port) runs the same cell with the same result, has a current clock and its
// own entropy, and answers Diagnose; a corrupted state is logged, falls back to a cold
// boot and is saved anew, and the next machine restores again.
func TestSnapshotBoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tg, _ := images.Lookup("x86_64")
	b := builder(t)
	img, err := b.Build(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(qemu.EnvNoSnapshot, "")
	logs := &syncBuffer{}
	cfg := qemu.Config{Image: img, Accel: "auto", SnapshotDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	procs, dirs := qemuChildren(t), qemuTempDirs()
	states := func() []string {
		m, _ := filepath.Glob(filepath.Join(cfg.SnapshotDir, "x86_64-*.vmstate"))
		return m
	}

	cold, err := qemu.Boot(ctx, cfg, b.KeyDir(), 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if cold.Restored || len(states()) != 1 {
		cold.Close()
		t.Fatalf("first boot: restored=%v, saved states %v", cold.Restored, states())
	}
	deploy(t, ctx, cold)
	coldRep := cellOnGuest(t, ctx, cold)
	cold.Close()

	warm, err := qemu.Boot(ctx, cfg, b.KeyDir(), 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer warm.Close()
		if !warm.Restored {
			t.Fatalf("second boot did not restore; log:\n%s", logs.String())
		}
		t.Logf("cold boot %.2fs, restore-to-SSH %.2fs", cold.BootTime.Seconds(), warm.BootTime.Seconds())
		if warm.SSHPort == cold.SSHPort {
			t.Logf("note: the restored machine got the saved machine's port by chance")
		}
		// The clock: set from the host by the first command.
		out, err := runner.Output(ctx, warm, "date +%s; test -e /root/userblk.ko && echo deployed || echo fresh")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(out)
		guest, _ := strconv.ParseInt(f[0], 10, 64)
		if d := time.Now().Unix() - guest; d > 30 || d < -30 {
			t.Errorf("restored guest clock is %d s off the host's", d)
		}
		if f[1] != "fresh" {
			t.Errorf("the restored machine carries files of the machine that ran after the save")
		}
		deploy(t, ctx, warm)
		warmRep := cellOnGuest(t, ctx, warm)
		t.Logf("cold: %d reads %d writes %d mismatches; restored: %d reads %d writes %d mismatches",
			coldRep.Reads, coldRep.Writes, coldRep.Mismatches, warmRep.Reads, warmRep.Writes, warmRep.Mismatches)
		for _, r := range []stressreport.Report{coldRep, warmRep} {
			if r.Reads == 0 || r.Writes == 0 || r.Mismatches != 0 || r.IOErrors != 0 {
				t.Errorf("copier cell not clean: %+v", r)
			}
		}
		diag, err := warm.Diagnose(ctx)
		if err != nil {
			t.Errorf("diagnose: %v", err)
		}
		if !strings.Contains(diag, "Show Blocked State") || !strings.Contains(diag, "Show State") {
			t.Errorf("diagnose printed no task dumps:\n%s", diag)
		}
	}()

	// Corrupt the saved state: the restore fails, is logged, the machine boots cold and
	// saves a fresh state.
	st := states()
	if len(st) != 1 {
		t.Fatalf("saved states: %v", st)
	}
	f, err := os.OpenFile(st[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), 0)
	f.Close()
	before, _ := os.Stat(st[0])
	fb, err := qemu.Boot(ctx, cfg, b.KeyDir(), 4*time.Minute)
	if err != nil {
		t.Fatalf("fallback boot: %v\n%s", err, logs.String())
	}
	fb.Close()
	if fb.Restored {
		t.Fatal("a corrupted state restored")
	}
	if !strings.Contains(logs.String(), "snapshot restore failed") {
		t.Errorf("the fallback was not logged:\n%s", logs.String())
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "snapshot restore failed") {
			t.Logf("fallback log: %s", l)
		}
	}
	after, err := os.Stat(st[0])
	if err != nil || os.SameFile(before, after) {
		t.Fatalf("the state was not saved anew: %v", err)
	}
	again, err := qemu.Boot(ctx, cfg, b.KeyDir(), 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if !again.Restored {
		t.Errorf("the rebuilt state did not restore")
	}
	if p, d := qemuChildren(t), qemuTempDirs(); p != procs || d != dirs {
		t.Errorf("left behind: %d QEMU processes (before %d), %d temp dirs (before %d)", p, procs, d, dirs)
	}
}
