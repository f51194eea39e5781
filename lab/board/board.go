// Package board reaches real hardware (a Raspberry Pi 4, or any board with SSH) as a
// runner.Runner: the same interface as a QEMU guest. Boards are described in
// runners.yaml; the host key is always pinned. The kernel log is followed over SSH from
// the moment the lab attaches, since a board has no serial console the lab can read.
package board

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kmodlab/kmodlab/lab/remote"
	"github.com/kmodlab/kmodlab/lab/runner"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// Board is one entry of runners.yaml.
type Board struct {
	Name      string   `yaml:"name"`
	Labels    []string `yaml:"labels"`
	Address   string   `yaml:"address"`
	Port      int      `yaml:"port"`
	User      string   `yaml:"user"`
	Identity  string   `yaml:"identity"` // private key file
	HostKey   string   `yaml:"host_key"` // "ssh-ed25519 AAAA…" (known_hosts key part) or "SHA256:…"
	Arch      string   `yaml:"arch"`     // GOARCH of the board's userland: arm, arm64, 386, amd64
	GOARM     string   `yaml:"goarm"`
	Build     string   `yaml:"build"`    // native (make on the board) or prebuilt
	Prebuilt  string   `yaml:"prebuilt"` // directory with <module>.ko, for build: prebuilt
	PowerOn   string   `yaml:"power_on_command"`
	HardReset string   `yaml:"hard_reset_command"`
	MaxJobs   int      `yaml:"max_jobs"`

	cfg *Config
}

// Config is a runners.yaml.
type Config struct {
	Boards   []*Board `yaml:"boards"`
	File     string   `yaml:"-"`
	StateDir string   `yaml:"-"` // quarantine records
}

// DefaultFile is $XDG_CONFIG_HOME/kmodlab/runners.yaml (or ~/.config/…).
func DefaultFile() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "kmodlab", "runners.yaml")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".config", "kmodlab", "runners.yaml")
}

// Load reads and checks a runners.yaml; errors name the file, board and field.
func Load(file, stateDir string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c.File, c.StateDir = file, stateDir
	seen := map[string]bool{}
	for i, b := range c.Boards {
		where := fmt.Sprintf("%s: boards[%d]", file, i)
		if b.Name == "" {
			return nil, fmt.Errorf("%s: name: missing", where)
		}
		where = fmt.Sprintf("%s: board %s", file, b.Name)
		if seen[b.Name] {
			return nil, fmt.Errorf("%s: name: used twice", where)
		}
		seen[b.Name] = true
		switch {
		case b.Address == "":
			return nil, fmt.Errorf("%s: address: missing", where)
		case b.HostKey == "":
			return nil, fmt.Errorf("%s: host_key: missing (a known_hosts key or SHA256 fingerprint; kmodlab never trusts a first use)", where)
		case b.Identity == "":
			return nil, fmt.Errorf("%s: identity: missing (the private key file to log in with)", where)
		case b.Arch == "":
			return nil, fmt.Errorf("%s: arch: missing (GOARCH of the board: arm, arm64, 386, amd64)", where)
		}
		if b.Build == "" {
			b.Build = "native"
		}
		if b.Build != "native" && b.Build != "prebuilt" {
			return nil, fmt.Errorf("%s: build: %q, want native or prebuilt", where, b.Build)
		}
		if b.Build == "prebuilt" && b.Prebuilt == "" {
			return nil, fmt.Errorf("%s: prebuilt: missing (directory with the .ko files)", where)
		}
		if b.Port == 0 {
			b.Port = 22
		}
		if b.User == "" {
			b.User = "root"
		}
		if b.MaxJobs == 0 {
			b.MaxJobs = 1
		}
		if b.Arch == "arm" && b.GOARM == "" {
			b.GOARM = "7"
		}
		b.cfg = &c
	}
	return &c, nil
}

// Match returns the boards named name or labelled name.
func (c *Config) Match(name string) []*Board {
	var out []*Board
	for _, b := range c.Boards {
		if b.Name == name {
			return []*Board{b}
		}
		for _, l := range b.Labels {
			if l == name {
				out = append(out, b)
			}
		}
	}
	return out
}

// Pick returns a usable board for name (a board or a label), skipping quarantined ones.
func (c *Config) Pick(name string) (*Board, error) {
	bs := c.Match(name)
	if len(bs) == 0 {
		return nil, fmt.Errorf("no board or label %q in %s", name, c.File)
	}
	var why []string
	for _, b := range bs {
		if reason := b.Quarantined(); reason != "" {
			why = append(why, b.Name+": "+reason)
			continue
		}
		return b, nil
	}
	return nil, fmt.Errorf("every board for %q is quarantined until 'kmodlab runners check' passes: %s", name, strings.Join(why, "; "))
}

func (b *Board) quarantineFile() string {
	if b.cfg == nil || b.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(b.cfg.StateDir, "quarantine", b.Name)
}

// Quarantined returns why the board is quarantined, or "".
func (b *Board) Quarantined() string {
	f := b.quarantineFile()
	if f == "" {
		return ""
	}
	data, err := os.ReadFile(f)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// SetQuarantine records (reason != "") or clears a quarantine.
func (b *Board) SetQuarantine(reason string) error {
	f := b.quarantineFile()
	if f == "" {
		return nil
	}
	if reason == "" {
		err := os.Remove(f)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	os.MkdirAll(filepath.Dir(f), 0o755)
	return os.WriteFile(f, []byte(time.Now().UTC().Format(time.RFC3339)+" "+reason+"\n"), 0o644)
}

// acquireSlot takes one of the board's max_jobs slots, a flock in the state dir that
// every kmodlab process on this host honours, waiting until one is free or ctx ends.
func (b *Board) acquireSlot(ctx context.Context) (*os.File, error) {
	if b.cfg == nil || b.cfg.StateDir == "" {
		return nil, nil
	}
	dir := filepath.Join(b.cfg.StateDir, "locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for {
		for i := 0; i < max(1, b.MaxJobs); i++ {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s.%d", b.Name, i)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, err
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				return f, nil
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("board %s: all %d job slots busy: %w", b.Name, b.MaxJobs, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// Info describes the board without connecting.
func (b *Board) Info() runner.Info {
	return runner.Info{Name: b.Name, Kind: "board", Target: b.Name, GOARCH: b.Arch, GOARM: b.GOARM,
		Build: b.Build, Prebuilt: b.Prebuilt}
}

func (b *Board) remoteConfig() (remote.Config, error) {
	key, err := os.ReadFile(b.Identity)
	if err != nil {
		return remote.Config{}, fmt.Errorf("board %s: identity: %w", b.Name, err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return remote.Config{}, fmt.Errorf("board %s: identity %s: %w", b.Name, b.Identity, err)
	}
	rc := remote.Config{Addr: fmt.Sprintf("%s:%d", b.Address, b.Port), User: b.User, Signer: signer}
	if strings.HasPrefix(b.HostKey, "SHA256:") {
		rc.HostKeyFingerprint = b.HostKey
	} else {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.HostKey))
		if err != nil {
			return rc, fmt.Errorf("board %s: host_key: %w", b.Name, err)
		}
		rc.HostKey = k
	}
	return rc, nil
}

// Attach connects (powering the board on first if a command is configured), checks the
// host key and starts following the kernel log.
func (b *Board) Attach(ctx context.Context) (*Session, error) {
	rc, err := b.remoteConfig()
	if err != nil {
		return nil, err
	}
	if b.PowerOn != "" {
		if out, err := exec.CommandContext(ctx, "sh", "-c", b.PowerOn).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("board %s: power_on_command: %w: %s", b.Name, err, out)
		}
	}
	slot, err := b.acquireSlot(ctx)
	if err != nil {
		return nil, err
	}
	c, err := remote.Dial(ctx, rc)
	if err != nil {
		slot.Close()
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	rel, err := c.Output(ctx, "uname -r")
	if err != nil {
		c.Close()
		slot.Close()
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	s := &Session{b: b, c: c, info: b.Info(), log: &streamLog{}, slot: slot}
	s.info.KernelRelease = strings.TrimSpace(rel)
	fctx, cancel := context.WithCancel(context.Background())
	s.stopFollow = cancel
	s.followDone = make(chan struct{})
	go func() {
		defer close(s.followDone)
		// busybox dmesg has no --follow; /dev/kmsg gives every record, then new ones.
		c.Run(fctx, "dmesg --follow 2>/dev/null || exec cat /dev/kmsg", s.log, io.Discard)
	}()
	return s, nil
}

// Session is an attached board: the board implementation of runner.Runner.
type Session struct {
	b          *Board
	c          *remote.Client
	info       runner.Info
	log        *streamLog
	stopFollow context.CancelFunc
	followDone chan struct{}
	slot       *os.File // flock held for max_jobs
	mu         sync.Mutex
	lost       bool
	closed     bool
}

var _ runner.Runner = (*Session)(nil)

// Info implements runner.Runner.
func (s *Session) Info() runner.Info { return s.info }

// Run implements runner.Runner.
func (s *Session) Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error {
	err := s.c.Run(ctx, cmd, stdout, stderr)
	if errors.Is(err, remote.ErrConnectionLost) {
		s.mu.Lock()
		s.lost = true
		s.mu.Unlock()
	}
	return err
}

// Copy implements runner.Runner.
func (s *Session) Copy(ctx context.Context, local, remotePath string, mode os.FileMode) error {
	return s.c.Copy(ctx, local, remotePath, mode)
}

// Fetch implements runner.Runner.
func (s *Session) Fetch(ctx context.Context, remotePath string, w io.Writer) error {
	return s.c.Fetch(ctx, remotePath, w)
}

// Log implements runner.Runner: the followed kernel log.
func (s *Session) Log() runner.Log { return s.log }

// Close implements runner.Runner. After a lost connection the board is reset with its
// hard_reset_command when one is configured.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	lost := s.lost
	s.mu.Unlock()
	s.stopFollow()
	s.c.Close()
	select {
	case <-s.followDone:
	case <-time.After(5 * time.Second):
	}
	if s.slot != nil {
		s.slot.Close() // releases the flock
	}
	if lost && s.b.HardReset != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "sh", "-c", s.b.HardReset).CombinedOutput(); err != nil {
			return fmt.Errorf("board %s: hard_reset_command: %w: %s", s.b.Name, err, out)
		}
	}
	return nil
}

// streamLog is a growing text fed by a follow session.
type streamLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *streamLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *streamLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

func (l *streamLog) Since(off int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	if off > len(s) {
		return ""
	}
	return s[off:]
}

// Health is what `kmodlab runners check` reports for a board.
type Health struct {
	Board     string `json:"board"`
	OK        bool   `json:"ok"`
	Machine   string `json:"machine"`
	Kernel    string `json:"kernel"`
	Headers   bool   `json:"headers"`
	MemFreeKB int64  `json:"mem_available_kb"`
	Problem   string `json:"problem,omitempty"`
}

// Check is the health check: reachable with the pinned host key, arch, kernel,
// headers (for native builds) and free memory. A failing board is quarantined; a
// passing one is released from quarantine.
func (b *Board) Check(ctx context.Context) *Health {
	h := &Health{Board: b.Name}
	fail := func(p string) *Health {
		h.Problem = p
		b.SetQuarantine(p)
		return h
	}
	s, err := b.Attach(ctx)
	if err != nil {
		return fail(err.Error())
	}
	defer s.Close()
	h.Kernel = s.info.KernelRelease
	out, err := s.c.Output(ctx, "uname -m; test -d /lib/modules/$(uname -r)/build && echo headers=yes || echo headers=no; grep MemAvailable /proc/meminfo")
	if err != nil {
		return fail("probe: " + err.Error())
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 0 {
		h.Machine = lines[0]
	}
	h.Headers = strings.Contains(out, "headers=yes")
	fmt.Sscanf(after(out, "MemAvailable:"), "%d", &h.MemFreeKB)
	if want := machineFor(b.Arch); want != "" && !strings.HasPrefix(h.Machine, want) {
		return fail(fmt.Sprintf("arch: runners.yaml says %s, the board is %s", b.Arch, h.Machine))
	}
	if b.Build == "native" && !h.Headers {
		return fail("no kernel headers at /lib/modules/$(uname -r)/build (install raspberrypi-kernel-headers or linux-headers-$(uname -r))")
	}
	if h.MemFreeKB > 0 && h.MemFreeKB < 64*1024 {
		return fail(fmt.Sprintf("only %d kB available", h.MemFreeKB))
	}
	h.OK = true
	b.SetQuarantine("")
	return h
}

func machineFor(goarch string) string {
	return map[string]string{"arm": "armv", "arm64": "aarch64", "386": "i", "amd64": "x86_64"}[goarch]
}

func after(s, key string) string {
	if i := strings.Index(s, key); i >= 0 {
		return strings.TrimSpace(s[i+len(key):])
	}
	return ""
}
