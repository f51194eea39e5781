// The fs mode: a filesystem on the device, files of patterned blocks, read back after
// the caches are dropped.

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kmodlab/kmodlab/internal/fsutil"
)

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

// runFS is the report's scenario: file data through the page cache, caches dropped,
// read again.
func runFS(s *state) error {
	if err := sh("mke2fs", "-q", "-F", "-b", "4096", s.o.dev); err != nil {
		return err
	}
	if err := os.MkdirAll(s.o.mnt, 0o755); err != nil {
		return err
	}
	if err := sh("mount", "-t", "ext2", s.o.dev, s.o.mnt); err != nil {
		return err
	}
	defer sh("umount", s.o.mnt)
	const fileBlocks = 64
	gens := make([][]uint64, s.o.threads*s.o.files)
	for i := range gens {
		gens[i] = make([]uint64, fileBlocks)
	}
	for round := 0; !s.done(); round++ {
		// Write phase: every thread rewrites its files.
		err := eachThread(s, func(t, cpu int) error {
			buf := make([]byte, fileBlocks*blockSize)
			for f := 0; f < s.o.files; f++ {
				id := t*s.o.files + f
				for b := 0; b < fileBlocks; b++ {
					if gens[id][b] == unknownGen {
						gens[id][b] = 0
					}
					gens[id][b]++
					fill(buf[b*blockSize:(b+1)*blockSize], s.o.seed, int64(id*fileBlocks+b), gens[id][b])
				}
				if err := writeSynced(filepath.Join(s.o.mnt, fmt.Sprintf("f%03d", id)), buf); err != nil {
					if !ioError(err) {
						return err
					}
					s.add(0, 0, 0, 0, 1)
					for b := range gens[id] {
						gens[id][b] = unknownGen
					}
					continue
				}
				s.add(1, 0, int64(len(buf)), 0, 0)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
			return fmt.Errorf("drop caches: %w", err)
		}
		// Read phase: each thread reads files another thread wrote.
		err = eachThread(s, func(t, cpu int) error {
			owner := (t + 1) % s.o.threads
			// A round is long under emulation (seconds): the end of the run (its
			// duration, SIGTERM) is honoured between files here, not only between rounds.
			for f := 0; f < s.o.files && !s.done(); f++ {
				id := owner*s.o.files + f
				name := filepath.Join(s.o.mnt, fmt.Sprintf("f%03d", id))
				data, err := os.ReadFile(name)
				if err != nil {
					if ioError(err) {
						s.add(0, 0, 0, 0, 1)
						continue
					}
					return err
				}
				s.add(0, 1, 0, int64(len(data)), 0)
				if len(data) != fileBlocks*blockSize {
					s.mismatch(Mismatch{Path: name, Holds: fmt.Sprintf("file of %d bytes", len(data)), Thread: t, CPU: cpu})
					continue
				}
				for b := 0; b < fileBlocks; b++ {
					check(s, data[b*blockSize:(b+1)*blockSize], name, int64(id*fileBlocks+b), int64(b*blockSize), gens[id][b], t, cpu)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writeSynced writes a file and waits for its write-back (fsync), so a write the device
// failed is counted as an I/O error, never mistaken later for data read back wrong.
func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return fsutil.CloseAfter(f, err)
}
