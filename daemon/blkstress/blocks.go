// The self-describing blocks: what a block holds, and checking one read back.

package main

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
)

// fill writes block's generation gen into b (one block).
func fill(b []byte, seed, block int64, gen uint64) {
	r := rand.New(rand.NewSource(seed ^ block*0x9e3779b1 ^ int64(gen)<<32))
	r.Read(b[hdrSize:])
	binary.LittleEndian.PutUint32(b[0:], magic)
	binary.LittleEndian.PutUint64(b[4:], uint64(block))
	binary.LittleEndian.PutUint64(b[12:], gen)
	binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b[hdrSize:]))
}

// describe says what a block's bytes hold.
func describe(b []byte) string {
	if binary.LittleEndian.Uint32(b) == magic {
		ok := binary.LittleEndian.Uint32(b[20:]) == crc32.ChecksumIEEE(b[hdrSize:])
		s := fmt.Sprintf("block %d gen %d", binary.LittleEndian.Uint64(b[4:]), binary.LittleEndian.Uint64(b[12:]))
		if !ok {
			s += " (torn: payload crc wrong)"
		}
		return s
	}
	for _, c := range b {
		if c != 0 {
			return "garbage"
		}
	}
	return "zeros"
}

// unknownGen marks a block whose last write failed: its contents are not checked until
// it is written again.
const unknownGen = ^uint64(0)

// check compares one read block with what was last written there.
func check(s *state, got []byte, path string, block, off int64, gen uint64, t, cpu int) {
	if gen == unknownGen {
		return
	}
	want := make([]byte, blockSize)
	if gen == 0 {
		want = want[:blockSize] // never written: zeros
	} else {
		fill(want, s.o.seed, block, gen)
	}
	if string(got) == string(want) {
		return
	}
	s.mismatch(Mismatch{Path: path, Block: block, Offset: off, WantGen: gen,
		WantCRC: fmt.Sprintf("%08x", crc32.ChecksumIEEE(want)), SeenCRC: fmt.Sprintf("%08x", crc32.ChecksumIEEE(got)),
		Holds: describe(got), Thread: t, CPU: cpu})
}
