package qemu

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"
	"github.com/kmodlab/kmodlab/internal/fsutil"
)

// Snapshot boots. The first boot of an image runs to READY (modules loaded, sshd
// listening), pauses, and saves the whole machine state (RAM and devices) into the cache
// with a QMP migrate to a file; the guest then continues. Every later machine of the same
// image, QEMU and machine arguments starts QEMU with -incoming reading that file, so the
// guest resumes at READY without booting. Per-machine parts are host-side only and may
// differ from the saved machine: the slirp host port of the SSH forward, the QMP socket,
// the console log. What a restore must fix inside the guest is done by the first SSH
// command: the wall clock (it stopped when the state was saved) and the entropy pool
// (every restored guest would otherwise share one). The SSH host key is the image's, so
// the pin holds. A restore that fails for any reason falls back to a cold boot, which
// saves a fresh state.

// snapshotFormat is part of every key: bump it when what is saved, or how, changes.
const snapshotFormat = 1

// EnvNoSnapshot set to 1 (or true) makes every boot cold.
const EnvNoSnapshot = "KMODLAB_NO_SNAPSHOT"

// snapshotKeep is how many saved states of one target the cache keeps (different machine
// arguments of one target each have theirs; older ones are removed).
const snapshotKeep = 3

// restoreTimeout bounds a restore (load the state, resume, first SSH command); past it
// the machine is booted cold.
const restoreTimeout = 60 * time.Second

// SnapshotsEnabled reports whether cfg may restore and save machine states.
func SnapshotsEnabled(cfg Config) bool {
	if cfg.NoSnapshot {
		return false
	}
	switch strings.ToLower(os.Getenv(EnvNoSnapshot)) {
	case "1", "true", "yes":
		return false
	}
	return true
}

func snapshotDir(cfg Config) string {
	if cfg.SnapshotDir != "" {
		return cfg.SnapshotDir
	}
	// The image lives in <cache>/images/<key>: snapshots go to <cache>/snapshots.
	return filepath.Join(filepath.Dir(filepath.Dir(cfg.Image.Dir)), "snapshots")
}

// SnapshotKeyInput is everything a saved state depends on. Its hash names the file.
type SnapshotKeyInput struct {
	Format    int      `json:"format"`
	Target    string   `json:"target"`
	ImageHash string   `json:"image_hash"`
	QEMU      string   `json:"qemu"` // binary path, its --version line, size and mtime
	Args      []string `json:"args"` // the exact machine arguments, per-machine parts as placeholders
}

// Placeholders for the per-machine arguments in a snapshot key.
const (
	keyPort = 1 // SSH host port: host side of slirp's forward, not guest state
	keyQMP  = "@QMP"
)

// snapshotKeyInput builds the key input for spec (its SSHPort and QMP are ignored).
func snapshotKeyInput(spec Spec, imageHash, qemuID string) SnapshotKeyInput {
	spec.SSHPort, spec.QMP = keyPort, keyQMP
	return SnapshotKeyInput{Format: snapshotFormat, Target: spec.Target.Name, ImageHash: imageHash, QEMU: qemuID, Args: Args(spec)}
}

// Key is the hex hash naming the saved state.
func (k SnapshotKeyInput) Key() string {
	data, _ := json.Marshal(k)
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:12])
}

var qemuIDs sync.Map // binary path + size + mtime -> id

// qemuID identifies a QEMU binary: its --version line plus size and mtime (a rebuilt
// package with the same version string still changes the key).
func qemuID(ctx context.Context, bin string) (string, error) {
	st, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	stat := fmt.Sprintf("%s %d %d", bin, st.Size(), st.ModTime().UnixNano())
	if v, ok := qemuIDs.Load(stat); ok {
		return v.(string), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	id := strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0] + " | " + stat
	qemuIDs.Store(stat, id)
	return id, nil
}

// snapshot is one saved state in the cache.
type snapshot struct {
	dir   string
	input SnapshotKeyInput
	key   string
}

func (s snapshot) file() string { return filepath.Join(s.dir, s.input.Target+"-"+s.key+".vmstate") }
func (s snapshot) meta() string { return filepath.Join(s.dir, s.input.Target+"-"+s.key+".json") }

// exists reports a complete saved state: the metadata is written last and must name
// this key's input.
func (s snapshot) exists() bool {
	data, err := os.ReadFile(s.meta())
	if err != nil {
		return false
	}
	var m snapshotMeta
	if json.Unmarshal(data, &m) != nil || m.Key != s.key {
		return false
	}
	st, err := os.Stat(s.file())
	return err == nil && st.Size() == m.Bytes
}

func (s snapshot) remove() {
	os.Remove(s.meta())
	os.Remove(s.file())
}

type snapshotMeta struct {
	Key         string           `json:"key"`
	Input       SnapshotKeyInput `json:"input"`
	Bytes       int64            `json:"bytes"`
	SaveSeconds float64          `json:"save_seconds"`
	Created     time.Time        `json:"created"`
}

// snapshotFor resolves the saved state cfg would use.
func snapshotFor(ctx context.Context, cfg Config, bin, accel string) (snapshot, error) {
	id, err := qemuID(ctx, bin)
	if err != nil {
		return snapshot{}, err
	}
	spec := Spec{Target: cfg.Image.Target, Kernel: cfg.Image.Kernel, BootStub: cfg.Image.BootStub, Initrd: cfg.Image.Initrd, Accel: accel,
		Append: cfg.Append, MemoryMB: cfg.MemoryMB, SMP: cfg.SMP}
	in := snapshotKeyInput(spec, cfg.Image.Hash, id)
	s := snapshot{dir: snapshotDir(cfg), input: in, key: in.Key()}
	pruneTemps(s.dir, time.Now())
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	if err := s.private(warnPrivate(log)); err != nil {
		return snapshot{}, err
	}
	return s, nil
}

// save pauses the machine, writes its state into the cache and resumes it. The guest's
// wall clock falls behind by the pause; attach sets it.
func (i *Instance) save(ctx context.Context, s snapshot) error {
	pruneTemps(s.dir, time.Now())
	tmp, err := s.createTemp(warnPrivate(i.log))
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	t0 := time.Now()
	if err := i.raw.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	defer i.raw.Cont()
	// QEMU's cat writes into the private file createTemp made (truncating it keeps its
	// mode), under a umask that makes nothing else it might create readable by others.
	if err := i.raw.Migrate("exec:umask 077 && cat > "+shellQuote(tmp), nil, nil, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		mi, err := i.raw.QueryMigrate()
		if err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		if mi.Status != nil {
			switch *mi.Status {
			case raw.MigrationStatusCompleted:
				goto done
			case raw.MigrationStatusFailed, raw.MigrationStatusCancelled:
				msg := ""
				if mi.ErrorDesc != nil {
					msg = *mi.ErrorDesc
				}
				return fmt.Errorf("migration %s: %s", mi.Status, msg)
			}
		}
		select {
		case <-ctx.Done():
			i.raw.MigrateCancel()
			return fmt.Errorf("saving the machine state: %w", ctx.Err())
		case <-i.exited:
			return errors.New("qemu exited while saving the machine state")
		case <-time.After(20 * time.Millisecond):
		}
	}
done:
	st, err := os.Stat(tmp)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, s.file()); err != nil {
		return err
	}
	m := snapshotMeta{Key: s.key, Input: s.input, Bytes: st.Size(), SaveSeconds: time.Since(t0).Seconds(), Created: time.Now().UTC()}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(s.meta()+".tmp", data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(s.meta()+".tmp", s.meta()); err != nil {
		return err
	}
	i.log.Info("machine state saved", "target", s.input.Target, "file", s.file(), "mb", st.Size()>>20, "seconds", m.SaveSeconds)
	pruneSnapshots(s)
	return nil
}

// A saved state is written to SNAPSHOT.tmp-PID-RANDOM and renamed when complete. The
// temp file holds the guest's RAM: it is created exclusively, 0600, in the snapshot
// directory (0700). One left behind (the writer was killed) is removed by the next
// save or lookup once its writer is gone or it is older than tempMaxAge.

// tempMaxAge is when a temp file counts as left behind even if its pid is alive again
// (a reused pid): a save takes seconds.
const tempMaxAge = time.Hour

// createTemp creates this state's temp file (closed, empty) and returns its path.
func (s snapshot) createTemp(warn func(string, os.FileMode)) (string, error) {
	tmp := fmt.Sprintf("%s.tmp-%d-%s", s.file(), os.Getpid(), randHex(4))
	f, err := fsutil.CreatePrivate(s.dir, tmp, warn)
	if err != nil {
		return "", err
	}
	return tmp, f.Close()
}

// pruneTemps removes the temp files in dir that were left behind.
func pruneTemps(dir string, now time.Time) {
	temps, _ := filepath.Glob(filepath.Join(dir, "*.vmstate.tmp-*"))
	for _, t := range temps {
		st, err := os.Stat(t)
		if err != nil {
			continue
		}
		if now.Sub(st.ModTime()) > tempMaxAge || !writerAlive(t) {
			os.Remove(t)
		}
	}
}

// writerAlive says whether the process named in a temp file's name may still write
// it (true when the name has no pid: then only the age decides).
func writerAlive(tmp string) bool {
	_, tail, _ := strings.Cut(filepath.Base(tmp), ".vmstate.tmp-")
	pidText, _, ok := strings.Cut(tail, "-")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || pid <= 0 {
		return true
	}
	return syscall.Kill(pid, 0) != syscall.ESRCH
}

// private makes the snapshot directory and this state's file the owner's alone.
func (s snapshot) private(warn func(string, os.FileMode)) error {
	if err := fsutil.Private(s.dir, warn); err != nil {
		return err
	}
	return fsutil.Private(s.file(), warn)
}

// pruneSnapshots keeps the newest snapshotKeep saved states of s's target.
func pruneSnapshots(s snapshot) {
	metas, _ := filepath.Glob(filepath.Join(s.dir, s.input.Target+"-*.json"))
	type aged struct {
		path string
		mod  time.Time
	}
	var all []aged
	for _, m := range metas {
		if st, err := os.Stat(m); err == nil {
			all = append(all, aged{m, st.ModTime()})
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].mod.After(all[b].mod) })
	for k, a := range all {
		if k >= snapshotKeep {
			os.Remove(a.path)
			os.Remove(strings.TrimSuffix(a.path, ".json") + ".vmstate")
		}
	}
}

// restore starts a machine from s and resumes it. The caller attaches over SSH.
func restore(ctx context.Context, cfg Config, bin, accel string, log *slog.Logger, s snapshot) (*Instance, error) {
	inst, err := startRetry(ctx, cfg, bin, accel, log, s.file())
	if err != nil {
		return nil, err
	}
	inst.Restored = true
	fail := func(err error) (*Instance, error) {
		inst.Close()
		tail := strings.TrimSpace(inst.con.Tail(5))
		if tail != "" {
			err = fmt.Errorf("%w (qemu said: %s)", err, strings.ReplaceAll(tail, "\n", " | "))
		}
		return nil, err
	}
	for {
		st, err := inst.raw.QueryStatus()
		if err != nil {
			return fail(fmt.Errorf("query-status: %w", err))
		}
		if st.Status != raw.RunStateInmigrate {
			if st.Status != raw.RunStatePaused && st.Status != raw.RunStateRunning {
				return fail(fmt.Errorf("after loading the state the machine is %s", st.Status))
			}
			break
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("loading the state: %w", ctx.Err()))
		case <-inst.exited:
			return fail(fmt.Errorf("qemu exited loading the state: %v", inst.exitErr))
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The state was saved paused, and a paused state stays paused after loading.
	if err := inst.raw.Cont(); err != nil {
		return fail(fmt.Errorf("cont: %w", err))
	}
	return inst, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
