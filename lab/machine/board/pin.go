package board

import (
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// A board's host_key pins its SSH host key in one of three forms:
//
//	ssh-ed25519 AAAAC3Nza…          the key itself (known_hosts' key part, ssh-keyscan)
//	ssh-ed25519 SHA256:Ab12…        the key's type and fingerprint (ssh-keygen -lf)
//	SHA256:Ab12…                    the fingerprint alone
//
// A server offers one host key per handshake, of the first algorithm both sides know,
// and the lab's SSH client prefers ECDSA and RSA to ed25519: against a stock OpenSSH
// server, which holds all three, a pin of its ed25519 key saw the ECDSA key and failed.
// So the lab asks only for the pinned key's algorithms when it knows the type (the
// first two forms); for a bare fingerprint it tries each key type in turn
// (lab/machine/remote) and takes the one whose key matches.

type pin struct {
	key         ssh.PublicKey // the key itself
	fingerprint string        // or its SHA256 fingerprint,
	keyType     string        // with its type when known
}

var fingerprintRe = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]+=*$`)

// keyTypes are the host key types a pin may name.
var keyTypes = map[string]bool{ssh.KeyAlgoED25519: true, ssh.KeyAlgoECDSA256: true, ssh.KeyAlgoECDSA384: true,
	ssh.KeyAlgoECDSA521: true, ssh.KeyAlgoRSA: true}

func parsePin(s string) (pin, error) {
	s = strings.TrimSpace(s)
	f := strings.Fields(s)
	switch {
	case len(f) == 1 && fingerprintRe.MatchString(f[0]):
		return pin{fingerprint: f[0]}, nil
	case len(f) == 1 && strings.HasPrefix(f[0], "SHA256:"):
		return pin{}, fmt.Errorf("%q: not a SHA256 fingerprint (ssh-keygen -lf gives SHA256: and 43 base64 characters)", s)
	case len(f) >= 2 && strings.HasPrefix(f[1], "SHA256:"):
		if !keyTypes[f[0]] {
			return pin{}, fmt.Errorf("%q: unknown key type %q (want ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa)", s, f[0])
		}
		if !fingerprintRe.MatchString(f[1]) || len(f) > 2 {
			return pin{}, fmt.Errorf("%q: want TYPE SHA256:FINGERPRINT", s)
		}
		return pin{fingerprint: f[1], keyType: f[0]}, nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return pin{}, fmt.Errorf("%q: %v (want a known_hosts key \"ssh-ed25519 AAAA…\", \"TYPE SHA256:…\" or \"SHA256:…\")", shorten(s), strings.TrimPrefix(err.Error(), "ssh: "))
	}
	return pin{key: k}, nil
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
