package board

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func write(t *testing.T, text string) string {
	f := filepath.Join(t.TempDir(), "runners.yaml")
	os.WriteFile(f, []byte(text), 0o644)
	return f
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"boards:\n  - name: a\n    address: x\n    identity: k\n    arch: arm\n", "board a: host_key: missing"},
		{"boards:\n  - name: a\n    address: x\n    identity: k\n    host_key: SHA256:x\n", "board a: arch: missing"},
		{"boards:\n  - name: a\n    address: x\n    identity: k\n    host_key: SHA256:x\n    arch: arm\n    build: magic\n", `build: "magic"`},
		{"boards:\n  - name: a\n    adress: x\n", "field adress not found"},
	} {
		if _, err := Load(write(t, tc.text), t.TempDir()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

func TestLabelsQuarantineAndSlots(t *testing.T) {
	cfg, err := Load(write(t, `boards:
  - {name: pi-a, labels: [pi4], address: a, identity: k, host_key: "SHA256:x", arch: arm}
  - {name: pi-b, labels: [pi4], address: b, identity: k, host_key: "SHA256:x", arch: arm}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Match("pi4")); n != 2 {
		t.Fatalf("label matches %d", n)
	}
	b, _ := cfg.Pick("pi4")
	if b.Name != "pi-a" || b.Port != 22 || b.User != "root" || b.GOARM != "7" || b.MaxJobs != 1 || b.Build != "native" {
		t.Errorf("defaults: %+v", b)
	}
	b.SetQuarantine("no headers")
	if p, _ := cfg.Pick("pi4"); p.Name != "pi-b" {
		t.Errorf("picked a quarantined board")
	}
	cfg.Boards[1].SetQuarantine("down")
	if _, err := cfg.Pick("pi4"); err == nil || !strings.Contains(err.Error(), "no headers") {
		t.Errorf("all quarantined: %v", err)
	}
	b.SetQuarantine("")
	if p, err := cfg.Pick("pi-a"); err != nil || p != b {
		t.Errorf("released board: %v", err)
	}
	// max_jobs 1: a second holder waits until the first lets go.
	s1, err := b.acquireSlot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := b.acquireSlot(ctx); err == nil {
		t.Fatal("a second job got the only slot")
	}
	s1.release()
	s2, err := b.acquireSlot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s2.release()
}

// keyFile writes a throwaway ed25519 identity.
func keyFile(t *testing.T) string {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "id")
	os.WriteFile(f, pem.EncodeToMemory(blk), 0o600)
	return f
}

// closedPort is a local TCP port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestNamesValidated(t *testing.T) {
	for _, tc := range []struct{ name, labels, want string }{
		{"pi/4", "[]", `boards[0]: name: "pi/4": only letters`},
		{"pi 4", "[]", `name: "pi 4"`},
		{"'pi;reboot'", "[]", `name: "pi;reboot"`},
		{"..", "[]", `name: ".." is not a name`},
		{"pi4", "[ok, ../x]", `board pi4: labels[1]: "../x"`},
		{"pi4", "[$(id)]", `labels[0]: "$(id)"`},
	} {
		text := fmt.Sprintf("boards:\n  - {name: %s, labels: %s, address: a, identity: k, host_key: \"SHA256:x\", arch: arm}\n", tc.name, tc.labels)
		f := write(t, text)
		_, err := Load(f, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f) {
			t.Errorf("%s %s: err = %v, want %q with the file name", tc.name, tc.labels, err, tc.want)
		}
	}
	if _, err := Load(write(t, "boards:\n  - {name: pi-4_b.lab, labels: [pi4], address: a, identity: k, host_key: \"SHA256:x\", arch: arm}\n"), t.TempDir()); err != nil {
		t.Errorf("valid name refused: %v", err)
	}
}

func TestBusyIsNotQuarantinedAndLabelsTakeIdleBoards(t *testing.T) {
	key := closedPort(t)
	cfg, err := Load(write(t, fmt.Sprintf(`boards:
  - {name: pi-a, labels: [pi4], address: 127.0.0.1, port: %d, identity: %s, host_key: "SHA256:x", arch: arm}
  - {name: pi-b, labels: [pi4], address: 127.0.0.1, port: %d, identity: %s, host_key: "SHA256:x", arch: arm}
`, key, keyFile(t), key, keyFile(t))), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Boards[0], cfg.Boards[1]
	held, err := a.acquireSlot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer held.release()

	// Busy: reported as busy, not checked, not quarantined.
	h := a.Check(context.Background())
	if !h.Busy || h.OK || a.Quarantined() != "" {
		t.Errorf("check of a busy board: %+v, quarantine %q", h, a.Quarantined())
	}
	// Pick prefers the idle board of the label.
	if p, _ := cfg.Pick("pi4"); p != b {
		t.Errorf("picked %s while pi-a is busy", p.Name)
	}
	// Attach by label goes to pi-b (here: fails to reach it, quickly) instead of waiting on pi-a.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = cfg.Attach(ctx, "pi4")
	if err == nil || !strings.Contains(err.Error(), "board pi-b") || ctx.Err() != nil {
		t.Errorf("attach by label while pi-a is busy: %v (ctx %v)", err, ctx.Err())
	}
	// The failed attach released pi-b's slot.
	if !b.idle() {
		t.Error("pi-b's slot is still held after a failed attach")
	}
	// Both busy: Attach waits, then says busy (not quarantined).
	heldB, _ := b.acquireSlot(context.Background())
	ctx2, cancel2 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel2()
	cfg.PollInterval = 100 * time.Millisecond
	_, err = cfg.Attach(ctx2, "pi4")
	if err == nil || !strings.Contains(err.Error(), `every board for "pi4" is busy (pi-a, pi-b)`) {
		t.Errorf("all busy: %v", err)
	}
	// ... and takes whichever frees first.
	heldB.release()
	ctx3, cancel3 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel3()
	if _, err = cfg.Attach(ctx3, "pi4"); err == nil || !strings.Contains(err.Error(), "board pi-b") {
		t.Errorf("after pi-b freed: %v", err)
	}
	if a.Quarantined() != "" || b.Quarantined() != "" {
		t.Errorf("attach failures quarantined a board")
	}
}

func TestQuarantineAtomic(t *testing.T) {
	cfg, err := Load(write(t, "boards:\n  - {name: pi-a, address: a, identity: k, host_key: \"SHA256:x\", arch: arm}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Boards[0]
	for i := 0; i < 3; i++ {
		if err := b.SetQuarantine(fmt.Sprintf("reason %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if q := b.Quarantined(); !strings.HasSuffix(q, "reason 2") {
		t.Errorf("quarantine = %q", q)
	}
	ents, _ := os.ReadDir(filepath.Dir(b.quarantineFile()))
	if len(ents) != 1 {
		t.Errorf("quarantine dir holds %d entries (temp files left?)", len(ents))
	}
	b.SetQuarantine("")
	if b.Quarantined() != "" {
		t.Error("not released")
	}
}

// TestResetHoldsTheSlot: hard_reset_command runs while the board's slot is held (it
// checks with flock itself), a board that does not come back is quarantined with the
// reason, and a board without hard_reset_command is quarantined rather than reused.
func TestResetHoldsTheSlot(t *testing.T) {
	state := t.TempDir()
	marker := filepath.Join(t.TempDir(), "marker")
	cfg, err := Load(write(t, fmt.Sprintf(`boards:
  - name: pi-a
    address: 127.0.0.1
    port: %d
    identity: %s
    host_key: "SHA256:x"
    arch: arm
    hard_reset_command: 'if flock -n %s/locks/pi-a.0 true; then echo free; else echo held; fi > %s; echo "$KMODLAB_BOARD $KMODLAB_RESET_REASON" >> %s'
  - {name: pi-b, address: 127.0.0.1, identity: %s, host_key: "SHA256:x", arch: arm}
`, closedPort(t), keyFile(t), state, marker, marker, keyFile(t))), state)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ResetTimeout = 3 * time.Second
	a := cfg.Boards[0]
	sl, err := a.acquireSlot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = a.reset(context.Background(), "HUNG in x/y")
	sl.release()
	got, _ := os.ReadFile(marker)
	if string(got) != "held\npi-a HUNG in x/y\n" {
		t.Errorf("hard_reset_command saw %q, want the slot held and its name and reason", got)
	}
	if err == nil || !strings.Contains(a.Quarantined(), "did not come back after a hard reset (HUNG in x/y)") {
		t.Errorf("unreachable after reset: err %v, quarantine %q", err, a.Quarantined())
	}
	b := cfg.Boards[1]
	if err := b.reset(context.Background(), "CRASHED in x/y"); err == nil || !strings.Contains(b.Quarantined(), "no hard_reset_command") {
		t.Errorf("no reset command: err %v, quarantine %q", err, b.Quarantined())
	}
}

// runners.yaml is the user's file, but a typo in it must be an error naming
// file:line and field, never a panic, a bare EOF or an address that cannot be dialled.
func TestLoadHostile(t *testing.T) {
	ok := "    address: a\n    identity: k\n    host_key: \"SHA256:x\"\n    arch: arm\n"
	for _, tc := range []struct{ text, want string }{
		{"boards:\n  -\n", ":2: boards[0]: an empty item"},
		{"boards:\n  - name: a\n" + ok + "  -\n", ":7: boards[1]: an empty item"},
		{"", ":1: empty: want a boards: list"},
		{"boards:\n  - name: a\n" + ok + "    port: 70000\n", ":7: board a: port: 70000: want 1 to 65535"},
		{"boards:\n  - name: a\n" + ok + "    port: -1\n", ":7: board a: port: -1"},
		{"boards:\n  - name: a\n" + ok + "    max_jobs: -3\n", ":7: board a: max_jobs: -3"},
		{"boards:\n  - name: a\n" + strings.Replace(ok, "address: a", "address: pi:22", 1), `:3: board a: address: "pi:22": not an IP address or host name (the port goes in port:)`},
		{"boards:\n  - name: a\n" + strings.Replace(ok, "address: a", "address: \"a b\"", 1), `:3: board a: address: "a b"`},
		{"boards:\n  - name: a\n" + strings.Replace(ok, `"SHA256:x"`, `"SHA256:!!"`, 1), `:5: board a: host_key: "SHA256:!!": not a SHA256 fingerprint`},
		{"boards:\n  - name: a\n" + strings.Replace(ok, `"SHA256:x"`, `"ssh-dss SHA256:x"`, 1), `:5: board a: host_key: "ssh-dss SHA256:x": unknown key type`},
		{"boards:\n  - name: a\n" + strings.Replace(ok, `"SHA256:x"`, `"ssh-ed25519 AAAAnotakey"`, 1), `:5: board a: host_key: "ssh-ed25519 AAAAnotakey"`},
		{"boards:\n  - name: a\n" + ok + "  - name: a\n" + ok, ":7: board a: name: used twice"},
		{"boards:\n  - name: a\n" + ok + "---\nboards: []\n", ":7: a second YAML document"},
	} {
		f := write(t, tc.text)
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			_, err = Load(f, t.TempDir())
		}()
		if err == nil || !strings.Contains(err.Error(), f+tc.want) {
			t.Errorf("%q:\n err = %v\nwant %q", tc.text, err, f+tc.want)
		}
	}
}

func TestAddresses(t *testing.T) {
	for addr, want := range map[string]string{"pi4.local": "pi4.local:22", "10.0.0.7": "10.0.0.7:22",
		"fe80::1%eth0": "[fe80::1%eth0]:22", "[2001:db8::7]": "[2001:db8::7]:22", "2001:db8::7": "[2001:db8::7]:22"} {
		cfg, err := Load(write(t, fmt.Sprintf("boards:\n  - {name: a, address: %q, identity: k, host_key: \"SHA256:x\", arch: arm}\n", addr)), t.TempDir())
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		if got := cfg.Boards[0].Addr(); got != want {
			t.Errorf("%s: dials %s, want %s", addr, got, want)
		}
	}
}

func TestPinForms(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	pub := signer.PublicKey()
	fp := ssh.FingerprintSHA256(pub)
	for text, want := range map[string]pin{
		fp:                  {fingerprint: fp},
		"ssh-ed25519 " + fp: {fingerprint: fp, keyType: "ssh-ed25519"},
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " me@host": {key: pub},
	} {
		got, err := parsePin(text)
		if err != nil || got.fingerprint != want.fingerprint || got.keyType != want.keyType || (want.key != nil && (got.key == nil || ssh.FingerprintSHA256(got.key) != fp)) {
			t.Errorf("%q: %+v %v", text, got, err)
		}
	}
}

// FuzzParse: any runners.yaml is an error that names the file and a line, or boards
// whose every field the lab uses is in range (seeds in testdata/fuzz/FuzzParse).
func FuzzParse(f *testing.F) {
	f.Add("boards:\n  - {name: pi4-a, labels: [pi4], address: \"fe80::1%eth0\", port: 2222, identity: k, host_key: \"ssh-ed25519 SHA256:q6JKscfMK7oFbWA4AFUDZGAdxnVRYEYlJ47pD37cd2I\", arch: arm, max_jobs: 2}\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("f.yaml", []byte(s), "")
		if err != nil {
			if !regexp.MustCompile(`^f\.yaml:[1-9][0-9]*: `).MatchString(err.Error()) {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		for _, b := range c.Boards {
			if b == nil || checkName(b.Name) != "" || b.Port < 1 || b.Port > 65535 || b.MaxJobs < 1 {
				t.Fatalf("board %+v", b)
			}
			if _, _, err := net.SplitHostPort(b.Addr()); err != nil {
				t.Fatalf("address %q: %v", b.Addr(), err)
			}
			if _, err := parsePin(b.HostKey); err != nil {
				t.Fatalf("host_key %q: %v", b.HostKey, err)
			}
		}
	})
}

// A private key others can read is refused (and left as it is: it is the user's).
func TestIdentityReadableByOthersRefused(t *testing.T) {
	key := keyFile(t)
	os.Chmod(key, 0o644)
	cfg, err := Load(write(t, fmt.Sprintf("boards:\n  - {name: a, address: 127.0.0.1, identity: %s, host_key: \"SHA256:x\", arch: arm}\n", key)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Boards[0].remoteConfig(); err == nil || !strings.Contains(err.Error(), "readable by others (mode 0644)") {
		t.Errorf("err = %v", err)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o644 {
		t.Error("the user's key was changed")
	}
}
