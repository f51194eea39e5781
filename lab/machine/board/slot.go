package board

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

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
