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
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kmodlab/kmodlab/internal/yamlline"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/logbuf"
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
	HostKey   string   `yaml:"host_key"` // "ssh-ed25519 AAAA…" (known_hosts key part), "ssh-ed25519 SHA256:…" or "SHA256:…" (pin.go)
	Arch      string   `yaml:"arch"`     // GOARCH of the board's userland: arm, arm64, 386, amd64
	GOARM     string   `yaml:"goarm"`
	Build     string   `yaml:"build"`              // native (make on the board) or prebuilt
	Prebuilt  string   `yaml:"prebuilt"`           // directory with <module>.ko, for build: prebuilt
	PowerOn   string   `yaml:"power_on_command"`   // run on this host, holding the board's slot
	HardReset string   `yaml:"hard_reset_command"` // run on this host, holding the slot, to recover the board
	MaxJobs   int      `yaml:"max_jobs"`

	cfg *Config
}

// The values of a board's build: field.
const (
	buildNative   = "native"
	buildPrebuilt = "prebuilt"
)

// Config is a runners.yaml.
type Config struct {
	Boards   []*Board  `yaml:"boards"`
	Lava     yaml.Node `yaml:"lava"` // LAVA labs: read by lab/lava, not here
	File     string    `yaml:"-"`
	StateDir string    `yaml:"-"` // quarantine records and slot locks

	// AttachTimeout bounds Attach: slot wait excluded, power-on, SSH and the first
	// command included (default 2 min). ResetTimeout bounds the wait for SSH after a
	// hard reset (default 5 min). PollInterval is how often a busy label is retried.
	AttachTimeout time.Duration `yaml:"-"`
	ResetTimeout  time.Duration `yaml:"-"`
	PollInterval  time.Duration `yaml:"-"`
}

// validName is what a board name and a label may be: they reach remote shell commands,
// lock and quarantine file names, and report paths.
var validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func checkName(s string) string {
	switch {
	case !validName.MatchString(s):
		return fmt.Sprintf("%q: only letters, digits, '.', '_' and '-' (the name reaches shell commands and file names)", s)
	case s == "." || s == "..":
		return fmt.Sprintf("%q is not a name", s)
	}
	return ""
}

// DefaultFile is $XDG_CONFIG_HOME/kmodlab/runners.yaml (or ~/.config/…).
func DefaultFile() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "kmodlab", "runners.yaml")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".config", "kmodlab", "runners.yaml")
}

// Load reads and checks a runners.yaml; errors say FILE:LINE: board NAME: FIELD:
// problem (boards[i] for a board without a usable name).
func Load(file, stateDir string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, data, stateDir)
}

// Parse checks a runners.yaml's bytes (Load).
func Parse(file string, data []byte, stateDir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:1: empty: want a boards: list (see README, \"Add a board\")", file)
		}
		line, msg := yamlline.Locate(err)
		return nil, fmt.Errorf("%s:%d: %s", file, line, strings.ReplaceAll(msg, " in type board.", " in "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a second YAML document: runners.yaml holds one", file, max(1, extra.Line))
	}
	var root yaml.Node
	yaml.Unmarshal(data, &root)
	c.File, c.StateDir = file, stateDir
	seen := map[string]bool{}
	for i, b := range c.Boards {
		idx := fmt.Sprint(i)
		where := fmt.Sprintf("boards[%d]", i)
		bad := func(field, format string, args ...any) error {
			keys := []string{"boards", idx}
			if field != "" {
				keys = append(keys, strings.SplitN(field, "[", 2)[0])
				field += ": "
			}
			return fmt.Errorf("%s:%d: %s: %s%s", file, yamlline.Of(&root, keys...), where, field, fmt.Sprintf(format, args...))
		}
		if b == nil {
			return nil, bad("", "an empty item: a board needs name, address, identity, host_key and arch")
		}
		if b.Name == "" {
			return nil, bad("name", "missing")
		}
		if p := checkName(b.Name); p != "" {
			return nil, bad("name", "%s", p)
		}
		where = "board " + b.Name
		for j, l := range b.Labels {
			if p := checkName(l); p != "" {
				return nil, bad(fmt.Sprintf("labels[%d]", j), "%s", p)
			}
		}
		if seen[b.Name] {
			return nil, bad("name", "used twice")
		}
		seen[b.Name] = true
		switch {
		case b.Address == "":
			return nil, bad("address", "missing")
		case b.HostKey == "":
			return nil, bad("host_key", "missing (a known_hosts key, \"TYPE SHA256:…\" or a SHA256 fingerprint; kmodlab never trusts a first use)")
		case b.Identity == "":
			return nil, bad("identity", "missing (the private key file to log in with)")
		case b.Arch == "":
			return nil, bad("arch", "missing (GOARCH of the board: arm, arm64, 386, amd64)")
		}
		addr, p := checkAddress(b.Address)
		if p != "" {
			return nil, bad("address", "%s", p)
		}
		b.Address = addr
		if _, err := parsePin(b.HostKey); err != nil {
			return nil, bad("host_key", "%v", err)
		}
		if b.Build == "" {
			b.Build = buildNative
		}
		if b.Build != buildNative && b.Build != buildPrebuilt {
			return nil, bad("build", "%q, want native or prebuilt", b.Build)
		}
		if b.Build == buildPrebuilt && b.Prebuilt == "" {
			return nil, bad("prebuilt", "missing (directory with the .ko files)")
		}
		if b.Port == 0 {
			b.Port = 22
		}
		if b.Port < 1 || b.Port > 65535 {
			return nil, bad("port", "%d: want 1 to 65535", b.Port)
		}
		if b.User == "" {
			b.User = "root"
		}
		if strings.IndexFunc(b.User, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return nil, bad("user", "%q holds white space or a control character", b.User)
		}
		if b.MaxJobs == 0 {
			b.MaxJobs = 1
		}
		if b.MaxJobs < 1 || b.MaxJobs > 64 {
			return nil, bad("max_jobs", "%d: want 1 to 64 (0 or unset: 1)", b.MaxJobs)
		}
		if b.Arch == "arm" && b.GOARM == "" {
			b.GOARM = "7"
		}
		b.cfg = &c
	}
	return &c, nil
}

// hostnameRe is a DNS name or an IPv4 address.
var hostnameRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// checkAddress accepts a host name or an IP address (IPv6 with or without brackets,
// with a zone); it returns the address without brackets, or the problem.
func checkAddress(a string) (string, string) {
	in := a
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		a = a[1 : len(a)-1]
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.String(), ""
	}
	if strings.Contains(a, ":") {
		return "", fmt.Sprintf("%q: not an IP address or host name (the port goes in port:)", in)
	}
	if !hostnameRe.MatchString(a) || len(a) > 253 {
		return "", fmt.Sprintf("%q: not an IP address or host name", in)
	}
	return a, ""
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

// Pick returns a usable board for name (a board or a label), skipping quarantined ones
// and preferring one with a free slot. A board whose slots are all busy is busy, not
// unusable: it is returned when no other board is idle.
func (c *Config) Pick(name string) (*Board, error) {
	usable, err := c.usable(name)
	if err != nil {
		return nil, err
	}
	for _, b := range usable {
		if b.idle() {
			return b, nil
		}
	}
	return usable[0], nil
}

// usable lists the boards for name that are not quarantined.
func (c *Config) usable(name string) ([]*Board, error) {
	bs := c.Match(name)
	if len(bs) == 0 {
		return nil, fmt.Errorf("no board or label %q in %s", name, c.File)
	}
	var why []string
	var out []*Board
	for _, b := range bs {
		if reason := b.Quarantined(); reason != "" {
			why = append(why, b.Name+": "+reason)
			continue
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("every board for %q is quarantined until 'kmodlab runners check' passes: %s", name, strings.Join(why, "; "))
	}
	return out, nil
}

// Attach attaches the first idle board for name (a board or a label). When every usable
// board is busy it waits until one has a free slot (or ctx ends), taking whichever frees
// first: a label does not wait on one board while another with the label is idle.
func (c *Config) Attach(ctx context.Context, name string) (*Session, error) {
	for {
		usable, err := c.usable(name)
		if err != nil {
			return nil, err
		}
		for _, b := range usable {
			slot, err := b.trySlot()
			if err != nil {
				return nil, err
			}
			if slot != nil {
				return b.attachHeld(ctx, slot)
			}
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, b := range usable {
				names = append(names, b.Name)
			}
			return nil, fmt.Errorf("every board for %q is busy (%s): %w", name, strings.Join(names, ", "), ctx.Err())
		case <-time.After(c.poll()):
		}
	}
}

func (c *Config) poll() time.Duration {
	if c == nil || c.PollInterval == 0 {
		return time.Second
	}
	return c.PollInterval
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
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		return err
	}
	// Written to a temp file and renamed: another kmodlab process reading it never
	// sees a half-written reason (or an empty file, which reads as "not quarantined").
	tmp, err := os.CreateTemp(filepath.Dir(f), "."+b.Name+".*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(time.Now().UTC().Format(time.RFC3339) + " " + reason + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// slot is one of a board's max_jobs slots: a flock in the state dir that every kmodlab
// process on this host honours. Power-on, hard reset and every job on the board happen
// while one is held. A nil *slot (no state dir) holds nothing.
type slot struct{ f *os.File }

func (s *slot) release() {
	if s != nil && s.f != nil {
		s.f.Close() // releases the flock
		s.f = nil
	}
}

// trySlot takes a free slot without waiting; (nil, nil) when every slot is busy.
func (b *Board) trySlot() (*slot, error) {
	if b.cfg == nil || b.cfg.StateDir == "" {
		return &slot{}, nil
	}
	dir := filepath.Join(b.cfg.StateDir, "locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i := 0; i < max(1, b.MaxJobs); i++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s.%d", b.Name, i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			return &slot{f: f}, nil
		}
		f.Close()
	}
	return nil, nil
}

// idle says whether a slot is free right now.
func (b *Board) idle() bool {
	s, err := b.trySlot()
	if s == nil || err != nil {
		return false
	}
	s.release()
	return true
}

// acquireSlot takes one of the board's slots, waiting until one is free or ctx ends.
func (b *Board) acquireSlot(ctx context.Context) (*slot, error) {
	for {
		s, err := b.trySlot()
		if s != nil || err != nil {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("board %s: all %d job slots busy: %w", b.Name, b.MaxJobs, ctx.Err())
		case <-time.After(b.cfg.poll()):
		}
	}
}

// Info describes the board without connecting.
func (b *Board) Info() runner.Info {
	return runner.Info{Name: b.Name, Kind: runner.KindBoard, Target: b.Name, GOARCH: b.Arch, GOARM: b.GOARM,
		Build: b.Build, Prebuilt: b.Prebuilt}
}

// Strategy is how the board gets kernel modules, as its build: field says (checked
// by Parse): built on the board, or taken from the prebuilt: directory.
func (b *Board) Strategy() build.Strategy {
	if b.Build == buildPrebuilt {
		return &build.Prebuilt{Dir: b.Prebuilt}
	}
	return build.Native{}
}

// Addr is the board's SSH address, host:port ([v6]:port for an IPv6 address).
func (b *Board) Addr() string { return net.JoinHostPort(b.Address, strconv.Itoa(b.Port)) }

func (b *Board) remoteConfig() (remote.Config, error) {
	// The identity is the user's own key: refused, not changed, when others may read
	// it (OpenSSH refuses such a key too).
	if st, err := os.Stat(b.Identity); err == nil && st.Mode().Perm()&0o077 != 0 {
		return remote.Config{}, fmt.Errorf("board %s: identity %s is readable by others (mode %04o): chmod 600 it", b.Name, b.Identity, st.Mode().Perm())
	}
	key, err := os.ReadFile(b.Identity)
	if err != nil {
		return remote.Config{}, fmt.Errorf("board %s: identity: %w", b.Name, err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return remote.Config{}, fmt.Errorf("board %s: identity %s: %w", b.Name, b.Identity, err)
	}
	rc := remote.Config{Addr: b.Addr(), User: b.User, Signer: signer}
	pin, err := parsePin(b.HostKey)
	if err != nil {
		return rc, fmt.Errorf("board %s: host_key: %w", b.Name, err)
	}
	rc.HostKey, rc.HostKeyFingerprint, rc.HostKeyType = pin.key, pin.fingerprint, pin.keyType
	return rc, nil
}

func (c *Config) attachTimeout() time.Duration {
	if c == nil || c.AttachTimeout == 0 {
		return 2 * time.Minute
	}
	return c.AttachTimeout
}

func (c *Config) resetTimeout() time.Duration {
	if c == nil || c.ResetTimeout == 0 {
		return 5 * time.Minute
	}
	return c.ResetTimeout
}

// hostCommand runs power_on_command or hard_reset_command on this host. The board's
// name, address and port are in its environment ($KMODLAB_BOARD, $KMODLAB_BOARD_ADDRESS,
// $KMODLAB_BOARD_PORT) and, for a reset, why ($KMODLAB_RESET_REASON).
func (b *Board) hostCommand(ctx context.Context, field, command, reason string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), "KMODLAB_BOARD="+b.Name, "KMODLAB_BOARD_ADDRESS="+b.Address,
		fmt.Sprintf("KMODLAB_BOARD_PORT=%d", b.Port), "KMODLAB_RESET_REASON="+reason)
	// The command may start a long-lived process (a power switch daemon, a test's
	// emulator) that keeps the output pipe open: wait for the command, not the pipe.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("board %s: %s: %w: %s", b.Name, field, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// dial connects and runs uname -r. With wait, a refused or timed-out connection is
// retried with backoff (1 s doubling to 15 s) until ctx ends; a host key mismatch never is.
func (b *Board) dial(ctx context.Context, wait bool) (*remote.Client, string, error) {
	rc, err := b.remoteConfig()
	if err != nil {
		return nil, "", err
	}
	backoff := time.Second
	for {
		c, err := remote.Dial(ctx, rc)
		if err == nil {
			rel, rerr := c.Output(ctx, "uname -r")
			if rerr == nil {
				return c, strings.TrimSpace(rel), nil
			}
			c.Close()
			err = rerr
		}
		var hke *remote.HostKeyError
		if !wait || errors.As(err, &hke) || strings.Contains(err.Error(), "host key") {
			return nil, "", fmt.Errorf("board %s: %w", b.Name, err)
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("board %s: not reachable: %w (last: %v)", b.Name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

// Attach takes a slot of this board (waiting while all are busy), powers it on with
// power_on_command if one is configured, connects, checks the host key and starts
// following the kernel log. Everything after the slot wait has a deadline.
func (b *Board) Attach(ctx context.Context) (*Session, error) {
	sl, err := b.acquireSlot(ctx)
	if err != nil {
		return nil, err
	}
	return b.attachHeld(ctx, sl)
}

// attachHeld attaches with the slot already held; it releases the slot on failure.
func (b *Board) attachHeld(ctx context.Context, sl *slot) (*Session, error) {
	actx, cancel := context.WithTimeout(ctx, b.cfg.attachTimeout())
	defer cancel()
	wait := false
	if b.PowerOn != "" {
		if err := b.hostCommand(actx, "power_on_command", b.PowerOn, ""); err != nil {
			sl.release()
			return nil, err
		}
		wait = true // it is booting
	}
	c, rel, err := b.dial(actx, wait)
	if err != nil {
		sl.release()
		if actx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (attach deadline %s)", err, b.cfg.attachTimeout())
		}
		return nil, err
	}
	log, _ := logbuf.New(0, "")
	s := &Session{b: b, c: c, info: b.Info(), log: log, slot: sl}
	s.info.KernelRelease = rel
	fctx, stop := context.WithCancel(context.Background())
	s.stopFollow = stop
	s.followDone = make(chan struct{})
	go func() {
		defer close(s.followDone)
		// busybox dmesg has no --follow; /dev/kmsg gives every record, then new ones.
		c.Run(fctx, "dmesg --follow 2>/dev/null || exec cat /dev/kmsg", s.log, io.Discard)
	}()
	return s, nil
}

// Session is an attached board: the board implementation of runner.Runner and
// runner.Resetter.
type Session struct {
	b          *Board
	c          *remote.Client
	info       runner.Info
	log        *logbuf.Buffer
	stopFollow context.CancelFunc
	followDone chan struct{}
	slot       *slot // held for max_jobs until Close or Reset
	mu         sync.Mutex
	lost       bool
	closed     bool
}

var (
	_ runner.Runner   = (*Session)(nil)
	_ runner.Resetter = (*Session)(nil)
)

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

// detach stops following the log and closes the SSH connection, keeping the slot. It
// reports whether the connection had been lost, and false if already detached.
func (s *Session) detach() (lost, ok bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, false
	}
	s.closed = true
	lost = s.lost
	s.mu.Unlock()
	s.stopFollow()
	s.c.Close()
	select {
	case <-s.followDone:
	case <-time.After(5 * time.Second):
	}
	s.log.Close()
	return lost, true
}

// Close implements runner.Runner. After a lost connection the board is reset (see
// Reset) before its slot is released, so no other job gets a board in that state.
func (s *Session) Close() error {
	lost, ok := s.detach()
	if !ok {
		return nil
	}
	defer s.slot.release()
	if lost && s.b.HardReset != "" {
		ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.resetTimeout()+2*time.Minute)
		defer cancel()
		return s.b.reset(ctx, "connection lost")
	}
	return nil
}

// Reset implements runner.Resetter: it power-cycles the board with hard_reset_command
// while still holding the board's slot (no other kmodlab process can attach to it
// mid-reset), waits with backoff until SSH answers again (bounded by ctx and the reset
// timeout), and then releases the slot. A board that has no hard_reset_command, or
// that does not come back, is quarantined with the reason, so later cells skip it
// instead of hanging on it; Reset then returns an error.
func (s *Session) Reset(ctx context.Context, reason string) error {
	if _, ok := s.detach(); !ok {
		return fmt.Errorf("board %s: reset after close", s.b.Name)
	}
	defer s.slot.release()
	return s.b.reset(ctx, reason)
}

// reset runs hard_reset_command and waits for the board; the caller holds a slot.
func (b *Board) reset(ctx context.Context, reason string) error {
	if b.HardReset == "" {
		p := fmt.Sprintf("needs a reset (%s) but has no hard_reset_command", reason)
		b.SetQuarantine(p)
		return fmt.Errorf("board %s: %s; quarantined", b.Name, p)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := b.hostCommand(cctx, "hard_reset_command", b.HardReset, reason)
	cancel()
	if err != nil {
		b.SetQuarantine(fmt.Sprintf("hard reset after %s failed: %v", reason, err))
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, b.cfg.resetTimeout())
	defer cancel()
	c, _, err := b.dial(wctx, true)
	if err != nil {
		b.SetQuarantine(fmt.Sprintf("did not come back after a hard reset (%s): %v", reason, err))
		return err
	}
	c.Close()
	return nil
}

// Health is what `kmodlab runners check` reports for a board.
type Health struct {
	Board     string `json:"board"`
	OK        bool   `json:"ok"`
	Busy      bool   `json:"busy,omitempty"` // every slot taken: not checked
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
	// A board whose slots are all taken is running someone's job: it is busy, which
	// says nothing about its health, so it is neither checked nor quarantined.
	sl, err := b.trySlot()
	if err != nil {
		h.Problem = err.Error()
		return h
	}
	if sl == nil {
		h.Busy = true
		h.Problem = fmt.Sprintf("busy: all %d job slots in use (not checked, not quarantined)", max(1, b.MaxJobs))
		return h
	}
	s, err := b.attachHeld(ctx, sl)
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
	if b.Build == buildNative && !h.Headers {
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
