package remote

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshServer is a local SSH server holding the given host keys, as stock OpenSSH holds
// ed25519, ECDSA and RSA keys; it accepts any client key and serves no channels.
func sshServer(t *testing.T, keys ...ssh.Signer) string {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	for _, k := range keys {
		cfg.AddHostKey(k)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					c.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "no")
				}
			}()
		}
	}()
	return l.Addr().String()
}

func signer(t *testing.T, kind string) ssh.Signer {
	t.Helper()
	var key any
	switch kind {
	case "ed25519":
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, _ = rsa.GenerateKey(rand.Reader, 2048)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A fingerprint pin of the server's ed25519 key: the client prefers ECDSA and RSA, so
// without choosing the algorithm it saw the ECDSA key and reported a false mismatch.
func TestFingerprintPinNegotiatesThePinnedKey(t *testing.T) {
	ed, ec, rs := signer(t, "ed25519"), signer(t, "ecdsa"), signer(t, "rsa")
	addr := sshServer(t, ec, rs, ed)
	client := signer(t, "ed25519")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, cfg := range map[string]Config{
		"bare ed25519 fingerprint":  {HostKeyFingerprint: ssh.FingerprintSHA256(ed.PublicKey())},
		"bare RSA fingerprint":      {HostKeyFingerprint: ssh.FingerprintSHA256(rs.PublicKey())},
		"typed ed25519 fingerprint": {HostKeyFingerprint: ssh.FingerprintSHA256(ed.PublicKey()), HostKeyType: ssh.KeyAlgoED25519},
		"ed25519 key":               {HostKey: ed.PublicKey()},
		"RSA key":                   {HostKey: rs.PublicKey()},
		"ECDSA key":                 {HostKey: ec.PublicKey()},
	} {
		cfg.Addr, cfg.Signer, cfg.Timeout = addr, client, 10*time.Second
		c, err := Dial(ctx, cfg)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		c.Close()
	}
	// A pin the server does not hold is still refused, naming what it offered.
	other := signer(t, "ed25519")
	_, err := Dial(ctx, Config{Addr: addr, Signer: client, Timeout: 10 * time.Second, HostKeyFingerprint: ssh.FingerprintSHA256(other.PublicKey())})
	var hke *HostKeyError
	if !errors.As(err, &hke) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(ed.PublicKey())) {
		t.Errorf("a foreign fingerprint: %v", err)
	}
	_, err = Dial(ctx, Config{Addr: addr, Signer: client, Timeout: 10 * time.Second, HostKeyFingerprint: ssh.FingerprintSHA256(ec.PublicKey()), HostKeyType: ssh.KeyAlgoED25519})
	if !errors.As(err, &hke) {
		t.Errorf("a fingerprint of the wrong type: %v", err)
	}
}
