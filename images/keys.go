package images

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kmodlab/kmodlab/internal/fsutil"
	"golang.org/x/crypto/ssh"
)

// DropbearEd25519 encodes an ed25519 private key in dropbear's own key file format
// (buf_put_ed25519_priv_key): string "ssh-ed25519", then a 64-byte string holding the
// 32-byte seed followed by the 32-byte public key.
func DropbearEd25519(key ed25519.PrivateKey) []byte {
	name := []byte("ssh-ed25519")
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, 64)
	b = append(b, key.Seed()...)
	b = append(b, key.Public().(ed25519.PublicKey)...)
	return b
}

// ParseDropbearEd25519 is the inverse of DropbearEd25519 (used by tests and `images check`).
func ParseDropbearEd25519(b []byte) (ed25519.PrivateKey, error) {
	str := func() ([]byte, error) {
		if len(b) < 4 {
			return nil, errors.New("dropbear key: truncated")
		}
		n := binary.BigEndian.Uint32(b)
		if uint32(len(b)-4) < n {
			return nil, errors.New("dropbear key: truncated")
		}
		s := b[4 : 4+n]
		b = b[4+n:]
		return s, nil
	}
	name, err := str()
	if err != nil {
		return nil, err
	}
	if string(name) != "ssh-ed25519" {
		return nil, fmt.Errorf("dropbear key: type %q, want ssh-ed25519", name)
	}
	k, err := str()
	if err != nil {
		return nil, err
	}
	if len(k) != 64 {
		return nil, fmt.Errorf("dropbear key: %d key bytes, want 64", len(k))
	}
	priv := ed25519.NewKeyFromSeed(k[:32])
	if string(priv.Public().(ed25519.PublicKey)) != string(k[32:]) {
		return nil, errors.New("dropbear key: public half does not match the seed")
	}
	return priv, nil
}

// ClientKey loads the lab's SSH client key from dir, creating it (0600) on first use.
func ClientKey(dir string) (ssh.Signer, error) {
	file := filepath.Join(dir, "id_ed25519")
	if data, err := os.ReadFile(file); err == nil {
		return ssh.ParsePrivateKey(data)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// An existing directory (made by an older version, or by hand) may be group- or
	// world-readable: the private key's directory is the owner's alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "kmodlab")
	if err != nil {
		return nil, err
	}
	// A fresh, exclusively created temp file (mode 0600 from the start): never a
	// predictable name another process could have planted or be writing.
	f, err := os.CreateTemp(dir, "id_ed25519.tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after the rename; removed on every error path
	_, err = f.Write(pem.EncodeToMemory(blk))
	if err := fsutil.CloseAfter(f, err); err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		return nil, err
	}
	return signer, os.Rename(tmp, file)
}
