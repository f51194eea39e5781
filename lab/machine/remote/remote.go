// Package remote is the lab's SSH client (golang.org/x/crypto/ssh): commands with streamed
// output, exit status and context deadlines, and file copy with go-scp. The host key is
// always pinned; there is no trust-on-first-use.
package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"io"
	"net"
	"os"
	"strings"
	"time"

	scp "github.com/bramvdbogaerde/go-scp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Client is one SSH connection.
type Client struct {
	addr string
	c    *ssh.Client
}

// Config says where and who.
type Config struct {
	Addr    string        // host:port
	User    string        // default root
	Signer  ssh.Signer    // client key
	HostKey ssh.PublicKey // pinned host key, or
	// KnownHosts is a known_hosts file, or HostKeyFingerprint a SHA256:... fingerprint.
	KnownHosts         string
	HostKeyFingerprint string
	// HostKeyType is the fingerprint's key type ("ssh-ed25519"), when known.
	HostKeyType string
	Timeout     time.Duration // dial + handshake, default 20 s
}

// HostKeyAlgorithms are the handshake algorithms that authenticate a host key of type
// t: an RSA key signs with SHA-2 (stock OpenSSH refuses SHA-1 ssh-rsa) or SHA-1.
func HostKeyAlgorithms(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// fingerprintTypes are tried in this order for a bare fingerprint pin.
var fingerprintTypes = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA}

// HostKeyCallback builds the pinned check; it refuses to build one that checks nothing.
func (c Config) HostKeyCallback() (ssh.HostKeyCallback, error) {
	switch {
	case c.HostKey != nil:
		return ssh.FixedHostKey(c.HostKey), nil
	case c.KnownHosts != "":
		return knownhosts.New(c.KnownHosts)
	case c.HostKeyFingerprint != "":
		want, wantType := c.HostKeyFingerprint, c.HostKeyType
		return func(host string, _ net.Addr, key ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(key); got != want || (wantType != "" && key.Type() != wantType) {
				return &HostKeyError{Host: host, Want: want, Got: got}
			}
			return nil
		}, nil
	}
	return nil, errors.New("no host key to check against (give host_key, known_hosts or a fingerprint)")
}

// HostKeyError is a host key that does not match the pinned one.
type HostKeyError struct{ Host, Want, Got string }

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host key mismatch for %s: got %s, want %s (refusing to connect)", e.Host, e.Got, e.Want)
}

// Dial connects and authenticates, honouring ctx and the timeout. Only the pinned key's
// algorithms are offered when its type is known: a server shows the key of the first
// algorithm both sides know (dropbear picks one even when it holds no key of that
// type), and the client prefers ECDSA and RSA to ed25519. A bare fingerprint pin is
// tried with each key type in turn until the server's key of that type matches.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	hk, err := cfg.HostKeyCallback()
	if err != nil {
		return nil, err
	}
	if cfg.User == "" {
		cfg.User = "root"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	switch {
	case cfg.HostKey != nil:
		return dial(ctx, cfg, hk, HostKeyAlgorithms(cfg.HostKey.Type()))
	case cfg.HostKeyFingerprint != "" && cfg.HostKeyType != "":
		return dial(ctx, cfg, hk, HostKeyAlgorithms(cfg.HostKeyType))
	case cfg.HostKeyFingerprint != "":
		var got []string
		for _, t := range fingerprintTypes {
			c, err := dial(ctx, cfg, hk, HostKeyAlgorithms(t))
			var hke *HostKeyError
			switch {
			case err == nil:
				return c, nil
			case errors.As(err, &hke):
				got = append(got, t+" "+hke.Got)
			case strings.Contains(err.Error(), "no common algorithm for host key"):
			default:
				return nil, err
			}
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("ssh %s: the server offers no host key of a type the lab knows", cfg.Addr)
		}
		return nil, fmt.Errorf("ssh %s: %w", cfg.Addr, &HostKeyError{Host: cfg.Addr, Want: cfg.HostKeyFingerprint, Got: strings.Join(got, ", ")})
	}
	return dial(ctx, cfg, hk, nil)
}

// dial is one connection and handshake offering algos (nil: the client's defaults).
func dial(ctx context.Context, cfg Config, hk ssh.HostKeyCallback, algos []string) (*Client, error) {
	cc := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: algos,
		Timeout:           cfg.Timeout,
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.Addr, err)
	}
	// The handshake has no context of its own: a deadline on the socket bounds it.
	deadline, _ := dctx.Deadline()
	conn.SetDeadline(deadline)
	sc, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, cc)
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		if errors.As(err, &hke) || strings.Contains(err.Error(), "host key mismatch") || strings.Contains(err.Error(), "key is unknown") {
			return nil, fmt.Errorf("ssh %s: %w", cfg.Addr, err)
		}
		return nil, fmt.Errorf("ssh %s: handshake: %w", cfg.Addr, err)
	}
	conn.SetDeadline(time.Time{})
	c := &Client{addr: cfg.Addr, c: ssh.NewClient(sc, chans, reqs)}
	go c.keepalive()
	return c, nil
}

// keepalive notices a dead peer (board unplugged, guest frozen) within a minute.
func (c *Client) keepalive() {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	fails := 0
	for range t.C {
		done := make(chan error, 1)
		go func() {
			_, _, err := c.c.SendRequest("keepalive@kmodlab", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				return // closed
			}
			fails = 0
		case <-time.After(15 * time.Second):
			if fails++; fails >= 3 {
				c.c.Close()
				return
			}
		}
	}
}

// ExitError is a command that ran and exited non-zero (defined by the runner contract).
type ExitError = runner.ExitError

// ErrConnectionLost is returned when the connection dies under a running command.
var ErrConnectionLost = runner.ErrConnectionLost

// Run runs cmd through the remote shell, streaming its output; a non-zero exit is an
// *ExitError. When ctx ends, the remote command is signalled and the session closed.
func (c *Client) Run(ctx context.Context, cmd string, stdout, stderr io.Writer) error {
	s, err := c.c.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: session: %w (%w)", c.addr, err, ErrConnectionLost)
	}
	defer s.Close()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	s.Stdout, s.Stderr = stdout, stderr
	if err := s.Start(cmd); err != nil {
		return fmt.Errorf("ssh %s: start %q: %w", c.addr, cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		return fmt.Errorf("%q: %w", cmd, ctx.Err())
	}
	var ee *ssh.ExitError
	var me *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return &ExitError{Cmd: cmd, Status: ee.ExitStatus(), Signal: ee.Signal()}
	case errors.As(err, &me), errors.Is(err, io.EOF):
		return fmt.Errorf("%q: %w", cmd, ErrConnectionLost)
	}
	return fmt.Errorf("%q: %w", cmd, err)
}

// Output runs cmd and returns its stdout; stderr is folded into the error.
func (c *Client) Output(ctx context.Context, cmd string) (string, error) {
	var out, errb strings.Builder
	err := c.Run(ctx, cmd, &out, &errb)
	if err != nil && errb.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

// Copy sends a local file to remotePath with mode (scp -t on the remote side).
func (c *Client) Copy(ctx context.Context, local, remotePath string, mode os.FileMode) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	sc, err := c.scp("-qt", remotePath)
	if err != nil {
		return err
	}
	defer sc.Close()
	if err := sc.CopyFromFile(ctx, *f, remotePath, fmt.Sprintf("%04o", mode.Perm())); err != nil {
		return fmt.Errorf("scp %s -> %s:%s: %w", local, c.addr, remotePath, err)
	}
	return nil
}

// scp starts an scp session on the connection whose remote side runs scp with flag
// (-qt to receive, -f to send) for remotePath.
func (c *Client) scp(flag, remotePath string) (*scp.Client, error) {
	bin, err := scpCommand(flag, remotePath)
	if err != nil {
		return nil, err
	}
	sc, err := scp.NewClientBySSH(c.c)
	if err != nil {
		return nil, err
	}
	sc.RemoteBinary = bin
	return &sc, nil
}

// Fetch copies a remote file to w.
func (c *Client) Fetch(ctx context.Context, remotePath string, w io.Writer) error {
	sc, err := c.scp("-f", remotePath)
	if err != nil {
		return err
	}
	defer sc.Close()
	if err := sc.CopyFromRemotePassThru(ctx, w, remotePath, nil); err != nil {
		return fmt.Errorf("scp %s:%s: %w", c.addr, remotePath, err)
	}
	return nil
}

// scpCommand is the remote command go-scp starts for remotePath. go-scp appends the
// path itself, quoted with Go's %q, which a shell does not read back as written ($ and
// ` expand inside double quotes). So the command carries the path quoted for the shell
// and ends in " #": go-scp's own " -qt \"…\"" becomes a comment. The path goes into
// the protocol's header line too, which a newline or NUL would break.
func scpCommand(flag, remotePath string) (string, error) {
	if remotePath == "" || strings.ContainsAny(remotePath, "\n\r\x00") {
		return "", fmt.Errorf("scp: remote path %q: empty, or holds a newline or NUL", remotePath)
	}
	return "scp " + flag + " " + ShellQuote(remotePath) + " #", nil
}

// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Close ends the connection.
func (c *Client) Close() error { return c.c.Close() }

// WaitBanner waits until addr answers with an SSH banner. slirp's hostfwd accepts TCP
// connections before the guest listens, so a plain connect proves nothing; each probe
// has a short deadline so a half-open forward cannot hang the caller.
func WaitBanner(ctx context.Context, addr string) error {
	for {
		if err := probe(ctx, addr); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no SSH banner from %s: %w", addr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(1500 * time.Millisecond))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("not an SSH banner: %q", line)
	}
	return nil
}
