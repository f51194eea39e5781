//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/machine/board"
	"github.com/kmodlab/kmodlab/lab/machine/qemu"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/run"
	"golang.org/x/crypto/ssh"
)

// powerSwitch is the board's "hardware" for the test: a fixed address (a TCP forwarder
// the board's runners.yaml names) in front of whichever QEMU guest is powered on now. A
// hard reset kills the guest's QEMU and boots a new one behind the same address.
type powerSwitch struct {
	t  *testing.T
	l  net.Listener
	mu sync.Mutex
	g  *qemu.Guest
}

func newPowerSwitch(t *testing.T, g *qemu.Guest) *powerSwitch {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &powerSwitch{t: t, l: l, g: g}
	go p.serve()
	return p
}

func (p *powerSwitch) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *powerSwitch) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		g := p.g
		p.mu.Unlock()
		if g == nil {
			c.Close()
			continue
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.SSHPort))
			if err != nil {
				return
			}
			defer up.Close()
			go func() { io.Copy(up, c); up.Close() }()
			io.Copy(c, up)
		}()
	}
}

// cycle powers the board off (kills its QEMU) and on (boots a new guest).
func (p *powerSwitch) cycle(ctx context.Context) error {
	p.mu.Lock()
	old := p.g
	p.g = nil
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	tg, err := images.Lookup("x86_64")
	if err != nil {
		return err
	}
	b := builder(p.t)
	img, err := b.Build(ctx, tg)
	if err != nil {
		return err
	}
	g, err := qemu.Boot(ctx, qemu.Config{Image: img, Accel: "auto"}, b.KeyDir(), 4*time.Minute)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.g = g
	p.mu.Unlock()
	return nil
}

func (p *powerSwitch) close() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g != nil {
		p.g.Close()
		p.g = nil
	}
}

// slotHeld says whether another process holds the board's first slot lock right now.
func slotHeld(file string) bool {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// TestBoardResetThroughAHang drives a QEMU guest as a board through runners.yaml. A job's
// first cell hangs (its step never finishes); the pipeline resets the board with
// hard_reset_command, which kills the guest's QEMU and boots a new one behind the same
// address, while the board's slot lock is held; then the next cell runs on the new
// guest. power_on_command runs under the lock too.
func TestBoardResetThroughAHang(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	procs := qemuChildren(t)
	sw := newPowerSwitch(t, boot(t, ctx, "x86_64"))
	defer sw.close()

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	lock := filepath.Join(state, "locks", "fake-pi.0")
	request := filepath.Join(dir, "reset-request")
	powerLog := filepath.Join(dir, "power-on.log")
	keyFile := filepath.Join(builder(t).KeyDir(), "id_ed25519")
	sw.mu.Lock()
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sw.g.Image.HostKey)))
	sw.mu.Unlock()
	// The reset command asks the test's power switch to cycle the board and waits for it.
	resetCmd := fmt.Sprintf(`echo "$KMODLAB_RESET_REASON" > %[1]s.tmp && mv %[1]s.tmp %[1]s && while [ -e %[1]s ]; do sleep 0.2; done`, request)
	powerCmd := fmt.Sprintf(`if flock -n %s true; then echo free; else echo held; fi >> %s`, lock, powerLog)
	runners := filepath.Join(dir, "runners.yaml")
	os.WriteFile(runners, []byte(fakePi(sw.port(), keyFile, hostKey, dir, powerCmd, resetCmd)), 0o644)
	cfg, err := board.Load(runners, state)
	if err != nil {
		t.Fatal(err)
	}

	type resetSeen struct {
		reason string
		held   bool
	}
	var (
		resets []resetSeen
		rmu    sync.Mutex
	)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			if data, err := os.ReadFile(request); err == nil {
				held := slotHeld(lock)
				t.Logf("hard reset requested (%s), slot lock held: %v: power-cycling the guest", strings.TrimSpace(string(data)), held)
				if err := sw.cycle(watchCtx); err != nil {
					t.Errorf("power cycle: %v", err)
				}
				rmu.Lock()
				resets = append(resets, resetSeen{strings.TrimSpace(string(data)), held})
				rmu.Unlock()
				os.Remove(request)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	jobFile := filepath.Join(dir, "board-reset.yaml")
	os.WriteFile(jobFile, []byte(`name: board-reset
targets: [pi4]
matrix: {step: [hang, work]}
stress:
  - name: work
    run: 'if [ {{.step}} = hang ]; then sleep 600; else cat /proc/sys/kernel/random/boot_id > /root/boot_id; fi'
    timeout: 10s
# The cells check nothing: this job is about the board's recovery, not a verdict on data.
expect: {default: clean, min_evidence: {io: 0}}
`), 0o644)
	f := &fleet.Fleet{Builder: builder(t), Boards: cfg}
	j, err := job.Load(jobFile, f.Known)
	if err != nil {
		t.Fatal(err)
	}
	sw.mu.Lock()
	firstBoot, _ := runner.Output(ctx, sw.g, "cat /proc/sys/kernel/random/boot_id")
	sw.mu.Unlock()
	rep, err := run.Run(ctx, run.Options{Job: j, Cells: j.Cells(), Seed: 3, Out: t.TempDir(), Machines: f,
		CacheDir: f.Builder.CacheDir, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	stopWatch()
	t.Logf("\n%s", rep.Matrix())
	for _, c := range rep.Cells {
		t.Logf("%s: %s on %s: %s %s", c.ID, c.Verdict, c.Runner, strings.Join(c.Evidence, "; "), c.Error)
	}
	if len(rep.Cells) != 2 {
		t.Fatalf("%d cells", len(rep.Cells))
	}
	if c := rep.Cells[0]; c.Verdict != verdict.Hung {
		t.Errorf("%s: %s, want HUNG", c.ID, c.Verdict)
	}
	if c := rep.Cells[1]; c.Verdict != verdict.Clean || c.Runner != "fake-pi" {
		t.Errorf("the cell after the reset: %s on %s, want clean on fake-pi: %s", c.Verdict, c.Runner, c.Error)
	}
	rmu.Lock()
	defer rmu.Unlock()
	if len(resets) != 1 || !strings.Contains(resets[0].reason, "pi4/hang") || !resets[0].held {
		t.Errorf("resets: %+v, want one, for pi4/hang, with the slot lock held", resets)
	}
	// The next cell ran on the new guest: its boot id is not the first guest's.
	sw.mu.Lock()
	g := sw.g
	sw.mu.Unlock()
	if g == nil {
		t.Fatal("no guest after the reset")
	}
	secondBoot, err := runner.Output(ctx, g, "cat /root/boot_id; cat /proc/sys/kernel/random/boot_id")
	ids := strings.Fields(secondBoot)
	if err != nil || len(ids) != 2 || ids[0] != ids[1] || ids[0] == strings.TrimSpace(firstBoot) {
		t.Errorf("the work cell's boot id %q, the new guest's, the first guest's %q (%v)", secondBoot, strings.TrimSpace(firstBoot), err)
	}
	power, _ := os.ReadFile(powerLog)
	if p := strings.Fields(string(power)); len(p) < 2 || strings.Contains(string(power), "free") {
		t.Errorf("power_on_command ran %d times, lock states %q; want every run with the slot held", len(p), power)
	}
	if slotHeld(lock) {
		t.Error("the board's slot is still held after the run")
	}
	if cfg.Boards[0].Quarantined() != "" {
		t.Errorf("board quarantined: %s", cfg.Boards[0].Quarantined())
	}
	sw.close()
	if p := qemuChildren(t); p != procs {
		t.Errorf("left behind %d QEMU processes (before %d)", p, procs)
	}
	if out, _ := exec.Command("pgrep", "-P", fmt.Sprint(os.Getpid()), "sleep").Output(); len(out) > 0 {
		t.Errorf("reset command still running: %s", out)
	}
}
