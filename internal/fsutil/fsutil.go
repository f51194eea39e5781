// Package fsutil holds the one file-copy helper the image builder and the module
// builder share, CloseAfter for every file written to, and the checks that keep the
// lab's secrets (its SSH key, images with guest host keys, saved machine states)
// private to their owner.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// CopyFile copies src to dst (created or truncated with mode).
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return CloseAfter(out, err)
}

// CloseAfter closes f, a file written to, after the writes that ended in err, and
// returns err, or when that is nil the error of the close: a write-back that failed.
func CloseAfter(f io.Closer, err error) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Private makes sure no one but the owner can use path: a private key, an image that
// holds one, a saved machine's RAM, or their directory. When path grants its group or
// others any access, that access is taken away and warn is told the mode it had. A
// path that does not exist is not an error.
func Private(path string, warn func(path string, had os.FileMode)) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	mode := st.Mode().Perm()
	if mode&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, mode&^0o077); err != nil {
		return fmt.Errorf("%s is readable by others (mode %04o) and cannot be made private: %w", path, mode, err)
	}
	if warn != nil {
		warn(path, mode)
	}
	return nil
}

// CreatePrivate creates file for writing, exclusively (it must not exist: never a name
// another process planted) and with mode 0600 from the start, in dir, which is created
// 0700 or made so.
func CreatePrivate(dir, file string, warn func(path string, had os.FileMode)) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := Private(dir, warn); err != nil {
		return nil, err
	}
	return os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}
