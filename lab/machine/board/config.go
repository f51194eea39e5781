// Package board reaches real hardware (a Raspberry Pi 4, or any board with SSH) as a
// runner.Runner: the same interface as a QEMU guest. Boards are described in
// runners.yaml; the host key is always pinned. The kernel log is followed over SSH from
// the moment the lab attaches, since a board has no serial console the lab can read.
package board

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/internal/yamlline"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
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
	Lava     yaml.Node `yaml:"lava"` // LAVA labs: read by lab/machine/lava, not here
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
