// The odirect mode: O_DIRECT I/O from pinned threads through a pool of buffers.

package main

import (
	"fmt"
	"math/rand"

	"golang.org/x/sys/unix"
)

// pool returns n page-aligned buffers of size bytes (anonymous memory, fresh pages).
func pool(n, size int) ([][]byte, error) {
	mem, err := unix.Mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = mem[i*size : (i+1)*size]
	}
	return out, nil
}

func runODirect(s *state) error {
	fd, err := unix.Open(s.o.dev, unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("open %s O_DIRECT: %w", s.o.dev, err)
	}
	defer unix.Close(fd)
	size, err := unix.Seek(fd, 0, 2)
	if err != nil {
		return err
	}
	span := min(s.o.span, size) / blockSize
	per := span / int64(s.o.threads)
	if per < maxRun {
		return fmt.Errorf("device too small: %d blocks for %d threads", span, s.o.threads)
	}
	return eachThread(s, func(t, cpu int) error {
		return odirectThread(s, fd, t, cpu, int64(t)*per, per)
	})
}

// odirectThread owns blocks [first, first+n): writes and reads only there.
func odirectThread(s *state, fd, t, cpu int, first, n int64) error {
	bufs, err := pool(poolSize, maxRun*blockSize)
	if err != nil {
		return err
	}
	gens := make([]uint64, n)
	r := rand.New(rand.NewSource(s.o.seed + int64(t)))
	next, failed := 0, 0
	ioerr := func(op string, n int, off int64, err error) error {
		s.add(0, 0, 0, 0, 1)
		if failed++; failed >= 100 {
			return fmt.Errorf("%s %d@%d: %w (100 I/O errors in a row: stopping)", op, n, off, err)
		}
		return nil
	}
	for !s.done() {
		run := int64(1 + r.Intn(maxRun))
		at := r.Int63n(n - run + 1)
		buf := bufs[next][:run*blockSize]
		next = (next + 1) % poolSize
		off := (first + at) * blockSize
		if r.Intn(3) == 0 {
			for i := int64(0); i < run; i++ {
				if gens[at+i] == unknownGen {
					gens[at+i] = 0
				}
				gens[at+i]++
				fill(buf[i*blockSize:(i+1)*blockSize], s.o.seed, first+at+i, gens[at+i])
			}
			if n, err := unix.Pwrite(fd, buf, off); err != nil || n != len(buf) {
				if err == nil {
					err = fmt.Errorf("short write: %d of %d bytes", n, len(buf))
				}
				// The block's contents are unknown now: a later read may see either.
				for i := int64(0); i < run; i++ {
					gens[at+i] = unknownGen
				}
				if err := ioerr("pwrite", len(buf), off, err); err != nil {
					return err
				}
				continue
			}
			failed = 0
			s.add(1, 0, int64(len(buf)), 0, 0)
			continue
		}
		if n, err := unix.Pread(fd, buf, off); err != nil || n != len(buf) {
			if err == nil {
				err = fmt.Errorf("short read: %d of %d bytes (device gone?)", n, len(buf))
			}
			if err := ioerr("pread", len(buf), off, err); err != nil {
				return err
			}
			continue
		}
		failed = 0
		s.add(0, 1, 0, int64(len(buf)), 0)
		for i := int64(0); i < run; i++ {
			check(s, buf[i*blockSize:(i+1)*blockSize], "", first+at+i, (first+at+i)*blockSize, gens[at+i], t, cpu)
		}
	}
	return nil
}
