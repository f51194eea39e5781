package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/internal/cleanup"
	"github.com/kmodlab/kmodlab/lab/machine/remote"
)

// Config says which image to boot and how.
type Config struct {
	Image      *images.Image
	Accel      string // auto, kvm or tcg
	WorkDir    string // parent of the instance's private temp dir (default: os.TempDir)
	ConsoleLog string // also copy the serial console here
	Append     string
	MemoryMB   int
	SMP        int
	Log        *slog.Logger
	// NoSnapshot boots cold even when a saved machine state exists (KMODLAB_NO_SNAPSHOT=1
	// does the same for every boot). SnapshotDir is where saved states live (default: the
	// "snapshots" directory next to the image cache).
	NoSnapshot  bool
	SnapshotDir string
}

// Instance is one running QEMU.
type Instance struct {
	Image   *images.Image
	Accel   string
	SSHPort int
	Dir     string // private temp dir: QMP socket; removed by Close
	Started time.Time
	// Restored: this machine resumed a saved state instead of booting (Snapshot boots).
	Restored bool

	cmd     *exec.Cmd
	stdin   io.WriteCloser // the serial console's input (sysrq after a break)
	mon     *qmp.SocketMonitor
	raw     *raw.Monitor
	spec    Spec
	con     *Console
	exited  chan struct{}
	exitErr error
	log     *slog.Logger
	events  chan qmp.Event

	closeOnce  sync.Once
	closeErr   error
	unregister func() // the emergency clean-up's (internal/cleanup)
	mu         sync.Mutex
	panicked   bool
	panicCh    chan struct{} // closed on GUEST_PANICKED (pvpanic) or a console panic
}

// BootError is a guest that did not come up, with the console output that explains it.
type BootError struct {
	Title  string // "boot timeout after 3m0s", "kernel panic: ...", "qemu exited: ..."
	Output string // the last 40 console lines
}

func (e *BootError) Error() string {
	return fmt.Sprintf("%s\n--- last console lines ---\n%s", e.Title, e.Output)
}

// Start launches QEMU. The guest is not ready yet: call WaitReady. Close must be called
// on every path, including when Start returns an Instance and a later step fails.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	bin, accel, log, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	return startRetry(ctx, cfg, bin, accel, log, "")
}

// prepare finds the QEMU binary and the accelerator for cfg.
func prepare(cfg Config) (bin, accel string, log *slog.Logger, err error) {
	t := cfg.Image.Target
	if bin, err = Binary(t); err != nil {
		return
	}
	accel, why, err := ResolveAccel(cfg.Accel, t)
	if err != nil {
		return
	}
	log = cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("accelerator", "target", t.Name, "accel", accel, "why", why)
	return bin, accel, log, nil
}

// startRetry is start, retried when the randomly picked host port was taken meanwhile.
func startRetry(ctx context.Context, cfg Config, bin, accel string, log *slog.Logger, incoming string) (*Instance, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		inst, err := start(ctx, cfg, bin, accel, log, incoming)
		if err == nil {
			return inst, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "host forwarding") {
			break
		}
	}
	return nil, lastErr
}

// start launches one QEMU. incoming, when set, is a saved machine state to restore
// (-incoming) instead of booting the kernel.
func start(ctx context.Context, cfg Config, bin, accel string, log *slog.Logger, incoming string) (*Instance, error) {
	if err := privateImage(cfg, log); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("no free local port: %w", err)
	}
	pruneWorkDirs(cfg.WorkDir)
	dir, err := os.MkdirTemp(cfg.WorkDir, "kmodlab-qemu-")
	if err != nil {
		return nil, err
	}
	os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o600)
	inst := &Instance{Image: cfg.Image, Accel: accel, SSHPort: port, Dir: dir, log: log,
		exited: make(chan struct{}), events: make(chan qmp.Event, 16), panicCh: make(chan struct{})}
	// Undone even if kmodlab exits at once (a second Ctrl-C): QEMU killed, dir removed.
	inst.unregister = cleanup.Register(inst.abandon)
	spec := Spec{Target: cfg.Image.Target, Kernel: cfg.Image.Kernel, BootStub: cfg.Image.BootStub, Initrd: cfg.Image.Initrd, Accel: accel,
		SSHPort: port, QMP: filepath.Join(dir, "qmp.sock"), Append: cfg.Append, MemoryMB: cfg.MemoryMB, SMP: cfg.SMP}
	inst.spec = spec
	args := Args(spec)
	if incoming != "" {
		args = append(args, "-incoming", "exec:cat "+shellQuote(incoming))
	}
	cmd := exec.Command(bin, args...)
	// Wait returns at most this long after QEMU exits even if a child (the -incoming
	// cat) still holds the console pipe.
	cmd.WaitDelay = 5 * time.Second
	// Own process group: a Ctrl-C in the terminal reaches us, and we shut QEMU down.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		inst.forget()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		out.Close()
		inst.forget()
		return nil, err
	}
	inst.stdin = stdin
	// Without a console log of the caller's, the console spills into the private dir.
	conPath := cfg.ConsoleLog
	if conPath == "" {
		conPath = filepath.Join(dir, "console.log")
	}
	if inst.con, err = newConsole(conPath); err != nil {
		out.Close()
		stdin.Close()
		inst.forget()
		return nil, err
	}
	log.Debug("qemu", "cmd", bin+" "+strings.Join(args, " "))
	inst.Started = time.Now()
	if err := cmd.Start(); err != nil {
		inst.con.close()
		out.Close()
		stdin.Close()
		inst.forget()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	inst.mu.Lock()
	inst.cmd = cmd
	inst.mu.Unlock()
	inst.con.onCrash = inst.markPanicked
	go inst.con.read(out)
	go func() {
		inst.exitErr = cmd.Wait()
		close(inst.exited)
	}()
	if err := inst.connectQMP(ctx, spec.QMP); err != nil {
		inst.Close()
		select {
		case <-inst.exited:
			return nil, &BootError{Title: fmt.Sprintf("qemu exited: %v", inst.exitErr), Output: inst.con.Tail(40)}
		default:
		}
		return nil, err
	}
	return inst, nil
}

func (i *Instance) connectQMP(ctx context.Context, sock string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-i.exited:
			return errors.New("qemu exited")
		default:
		}
		if _, err := os.Stat(sock); err == nil {
			mon, err := qmp.NewSocketMonitor("unix", sock, 2*time.Second)
			if err == nil {
				done := make(chan error, 1)
				go func() { done <- mon.Connect() }()
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					mon.Disconnect()
					err = errors.New("QMP handshake timed out")
				}
				if err == nil {
					i.mon = mon
					i.raw = raw.NewMonitor(mon)
					// The event stream ends when the monitor disconnects (Close), not
					// with the boot's context.
					if evs, err := mon.Events(context.Background()); err == nil {
						go i.watchEvents(evs)
					}
					return nil
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("QMP %s: %w", sock, err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QMP socket %s never appeared", sock)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (i *Instance) watchEvents(evs <-chan qmp.Event) {
	for e := range evs {
		i.log.Debug("qmp event", "event", e.Event)
		if e.Event == "GUEST_PANICKED" {
			i.log.Warn("guest panicked (pvpanic)", "target", i.Image.Target.Name, "data", e.Data)
			i.markPanicked()
		}
		select {
		case i.events <- e:
		default:
		}
	}
}

// WaitReady waits for the console's ready marker, then for an SSH banner on the
// forwarded port. A panic on the console, QEMU exiting or the timeout end it early
// with a *BootError carrying the last console lines.
func (i *Instance) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !i.con.Ready() {
		if rep := i.con.Crash(); rep != nil {
			return &BootError{Title: "boot failed: " + rep.Title, Output: i.con.Tail(40)}
		}
		select {
		case <-i.exited:
			return &BootError{Title: fmt.Sprintf("qemu exited during boot: %v", i.exitErr), Output: i.con.Tail(40)}
		case <-ctx.Done():
			return &BootError{Title: fmt.Sprintf("boot timeout after %s (no %s on the console)", timeout, images.ReadyMarker), Output: i.con.Tail(40)}
		case <-tick.C:
		}
	}
	if err := remote.WaitBanner(ctx, i.Addr()); err != nil {
		return &BootError{Title: "guest never answered SSH: " + err.Error(), Output: i.con.Tail(40)}
	}
	return nil
}

// Addr is the forwarded SSH address.
func (i *Instance) Addr() string { return fmt.Sprintf("127.0.0.1:%d", i.SSHPort) }

// Console is the serial console of this guest.
func (i *Instance) Console() *Console { return i.con }

// Exited is closed when QEMU has exited.
func (i *Instance) Exited() <-chan struct{} { return i.exited }

// Panicked reports a GUEST_PANICKED event or a panic on the console.
func (i *Instance) Panicked() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.panicked
}

// PanicSignal is closed when the guest panics: QEMU's GUEST_PANICKED event (the pvpanic
// device; the kernel reports a panic there before it prints it all) or a panic line on
// the console. A crash watcher selects on it next to the console's new output.
func (i *Instance) PanicSignal() <-chan struct{} { return i.panicCh }

func (i *Instance) markPanicked() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.panicked {
		i.panicked = true
		close(i.panicCh)
	}
}

// Close shuts QEMU down (QMP quit, then SIGTERM, then SIGKILL to its process group),
// waits for it and removes the private temp dir. It is safe to call more than once.
func (i *Instance) Close() error {
	i.closeOnce.Do(func() {
		if i.cmd != nil && i.cmd.Process != nil {
			i.closeErr = i.stop()
		}
		if i.mon != nil {
			i.mon.Disconnect()
		}
		i.con.close()
		if i.stdin != nil {
			i.stdin.Close()
		}
		i.forget()
	})
	return i.closeErr
}

// forget removes the private dir and the emergency clean-up that would have.
func (i *Instance) forget() {
	os.RemoveAll(i.Dir)
	if i.unregister != nil {
		i.unregister()
	}
}

// abandon is the emergency clean-up (internal/cleanup): QEMU's process group gets
// SIGKILL, the private dir goes. No QMP, no waiting.
func (i *Instance) abandon() {
	i.mu.Lock()
	cmd := i.cmd
	i.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	os.RemoveAll(i.Dir)
}

// pruneWorkDirs removes private dirs under workDir (default os.TempDir) left by a
// kmodlab process that no longer runs (killed before it could clean up).
func pruneWorkDirs(workDir string) {
	if workDir == "" {
		workDir = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(workDir, "kmodlab-qemu-*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue // not ours to judge (an older version's, or being made)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

func (i *Instance) stop() error {
	wait := func(d time.Duration) bool {
		select {
		case <-i.exited:
			return true
		case <-time.After(d):
			return false
		}
	}
	select {
	case <-i.exited:
		return nil
	default:
	}
	if i.raw != nil {
		go i.raw.Quit()
		if wait(3 * time.Second) {
			return nil
		}
	}
	pgid := -i.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	if wait(3 * time.Second) {
		return nil
	}
	syscall.Kill(pgid, syscall.SIGKILL)
	if wait(5 * time.Second) {
		return nil
	}
	return fmt.Errorf("qemu pid %d did not exit after SIGKILL", i.cmd.Process.Pid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
