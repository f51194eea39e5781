package main

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// block content: 16-byte header (block, generation, seed) then a pattern.
func fill(b []byte, blk, gen uint64, seed int64) {
	binary.LittleEndian.PutUint64(b[0:], blk)
	binary.LittleEndian.PutUint64(b[8:], gen)
	x := uint32(blk*2654435761) ^ uint32(gen) ^ uint32(seed)
	for i := 16; i < len(b); i += 4 {
		x = x*1664525 + 1013904223
		binary.LittleEndian.PutUint32(b[i:], x)
	}
}

// ioWorker writes and reads back its own blocks (the w-th of workers equal ranges)
// with O_DIRECT until stop, 1 to 4 blocks at a time (a bio of as many segments),
// checking the data and that no I/O takes longer than bound (or, given, limit: a
// violation of its own, the fuzzer goes on).
func (f *fuzzer) ioWorker(rng *rand.Rand, fd, w, workers int, blocks uint64, stop *atomic.Bool, bound time.Duration, name string, limit *time.Duration) {
	runtime.LockOSThread()
	buf := alignedBuf(4 * 4096)
	defer unix.Munmap(buf)
	gen := map[uint64]uint64{}   // block -> generation written (0: zeros)
	unknown := map[uint64]bool{} // a failed write: contents undefined
	var seq uint64
	errs := 0
	per := blocks / uint64(workers)
	for !stop.Load() && (errs < 50 || limit != nil) {
		n := uint64(1 + rng.Intn(4))
		blk := uint64(w)*per + uint64(rng.Intn(int(per)-4))
		p := buf[:n*4096]
		off := int64(blk * 4096)
		write := rng.Intn(2) == 0
		watch := time.AfterFunc(bound, func() {
			f.violate("bio never completed", fmt.Sprintf("%s: %s of block %d has not returned after %v", name, map[bool]string{true: "write", false: "read"}[write], blk, bound))
			f.report(0)
			os.Exit(1)
		})
		var err error
		var k int
		began := time.Now()
		if write {
			seq++
			for i := uint64(0); i < n; i++ {
				fill(p[i*4096:(i+1)*4096], blk+i, seq, f.seed)
			}
			k, err = unix.Pwrite(fd, p, off)
		} else {
			k, err = unix.Pread(fd, p, off)
		}
		watch.Stop()
		took := time.Since(began)
		for {
			old := f.longest.Load()
			if int64(took) <= old || f.longest.CompareAndSwap(old, int64(took)) {
				break
			}
		}
		if limit != nil && took > *limit {
			f.violate("submitter waited longer than io_timeout + 2 s", fmt.Sprintf("%s: %s of %d blocks at %d took %v (%v)",
				name, map[bool]string{true: "write", false: "read"}[write], n, blk, took.Round(time.Millisecond), errno(err)))
		}
		if err != nil || k != len(p) {
			f.ioErrs.Add(1)
			errs++
			if write {
				for i := uint64(0); i < n; i++ {
					unknown[blk+i] = true
				}
			}
			continue
		}
		if write {
			f.writes.Add(1)
			for i := uint64(0); i < n; i++ {
				gen[blk+i] = seq
				delete(unknown, blk+i)
			}
			continue
		}
		for i := uint64(0); i < n; i++ {
			b := blk + i
			if unknown[b] {
				continue
			}
			want := make([]byte, 4096)
			if g := gen[b]; g != 0 {
				fill(want, b, g, f.seed)
			}
			got := p[i*4096 : (i+1)*4096]
			if string(got) != string(want) {
				f.violate("data not what was written", fmt.Sprintf("%s block %d: want gen %d crc %08x, read crc %08x (header block %d gen %d)",
					name, b, gen[b], crc32.ChecksumIEEE(want), crc32.ChecksumIEEE(got),
					binary.LittleEndian.Uint64(got), binary.LittleEndian.Uint64(got[8:])))
				unknown[b] = true
			}
		}
		f.reads.Add(1)
	}
}
