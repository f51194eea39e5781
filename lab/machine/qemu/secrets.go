package qemu

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kmodlab/kmodlab/internal/fsutil"
)

// The lab's secrets on this host: its SSH client key (keys/id_ed25519), every image's
// initramfs (it holds the guest's SSH host private key, so whoever reads it can
// impersonate the guest) and every saved machine state (the guest's RAM, the host key
// in it). Each is the owner's alone, 0600 in a 0700 directory where the lab makes the
// directory. One found readable by others (an older version's, or a cache someone
// chmod'ed to share it) is made private before it is used, with a warning.

func warnPrivate(log *slog.Logger) func(string, os.FileMode) {
	return func(path string, had os.FileMode) {
		log.Warn("a secret of the lab was readable by others: made private", "path", path, "mode", fmt.Sprintf("%04o", had), "now", fmt.Sprintf("%04o", had&^0o077))
	}
}

// privateKey checks the client key and its directory.
func privateKey(keyDir string, log *slog.Logger) error {
	for _, p := range []string{keyDir, filepath.Join(keyDir, "id_ed25519")} {
		if err := fsutil.Private(p, warnPrivate(log)); err != nil {
			return err
		}
	}
	return nil
}

// privateImage checks the initramfs QEMU is about to read (the image's own, and the
// one with the job's additions when that is another file).
func privateImage(cfg Config, log *slog.Logger) error {
	paths := []string{cfg.Image.Initrd}
	if cfg.Image.Dir != "" {
		if own := filepath.Join(cfg.Image.Dir, "initramfs.cpio"); own != cfg.Image.Initrd {
			paths = append(paths, own)
		}
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		if err := fsutil.Private(p, warnPrivate(log)); err != nil {
			return err
		}
	}
	return nil
}
