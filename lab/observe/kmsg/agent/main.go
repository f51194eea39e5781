// Command kmodlab-kmsg runs on the machine under test and reads the kernel log as
// records with sequence numbers (/dev/kmsg), so the lab can cut each cell's window by
// sequence and notice records that were lost. The lab builds it for each machine's
// architecture from this file alone (standard library only) and deploys it with the
// job's files.
//
//	kmodlab-kmsg last                 print the newest record's sequence number
//	kmodlab-kmsg read -from A [-until B]   print records A.. (up to B) that exist now, then exit
//	kmodlab-kmsg follow -from A       print records A.. and keep following
//
// Records are printed one per line as /dev/kmsg gives them: "pri,seq,ts_us,flags;text"
// (the kernel escapes newlines and other control bytes in text). Continuation lines
// (device properties) are dropped. A read that finds records overwritten (EPIPE) goes
// on with the oldest the kernel still holds: the sequence gap tells the lab.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kmodlab-kmsg last | read -from SEQ [-until SEQ] | follow -from SEQ")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	from := fs.Uint64("from", 0, "first sequence number to print")
	until := fs.Int64("until", -1, "last sequence number to print (read)")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "last":
		err = last()
	case "read":
		err = read(*from, *until, false)
	case "follow":
		err = read(*from, -1, true)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kmodlab-kmsg:", err)
		os.Exit(1)
	}
}

func open(block bool) (int, error) {
	flags := syscall.O_RDONLY
	if !block {
		flags |= syscall.O_NONBLOCK
	}
	return syscall.Open("/dev/kmsg", flags, 0)
}

// next reads one record; ok is false at the end (non-blocking) and on EPIPE (lost).
func next(fd int, buf []byte) (rec []byte, lost bool, end bool, err error) {
	for {
		n, err := syscall.Read(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return nil, false, true, nil
		case err == syscall.EPIPE:
			return nil, true, false, nil
		case err != nil:
			return nil, false, false, err
		}
		return buf[:n], false, false, nil
	}
}

func seqOf(rec []byte) (uint64, bool) {
	i := bytes.IndexByte(rec, ',')
	if i < 0 {
		return 0, false
	}
	j := bytes.IndexByte(rec[i+1:], ',')
	if j < 0 {
		return 0, false
	}
	s, err := strconv.ParseUint(string(rec[i+1:i+1+j]), 10, 64)
	return s, err == nil
}

func last() error {
	fd, err := open(false)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	// SEEK_END positions after the newest record; reading from SEEK_DATA would walk
	// everything, so walk once and keep the last sequence (bounded by the buffer).
	buf := make([]byte, 8192)
	var seq uint64
	found := false
	for {
		rec, lost, end, err := next(fd, buf)
		if err != nil {
			return err
		}
		if end {
			break
		}
		if lost {
			continue
		}
		if s, ok := seqOf(rec); ok {
			seq, found = s, true
		}
	}
	if !found {
		return fmt.Errorf("the kernel log is empty")
	}
	fmt.Println(seq)
	return nil
}

func read(from uint64, until int64, follow bool) error {
	fd, err := open(follow)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	w := bufio.NewWriterSize(os.Stdout, 64*1024)
	defer w.Flush()
	buf := make([]byte, 8192)
	lastFlush := time.Now()
	for {
		rec, lost, end, err := next(fd, buf)
		if err != nil {
			return err
		}
		if end {
			return nil
		}
		if lost {
			continue
		}
		s, ok := seqOf(rec)
		if !ok || s < from {
			continue
		}
		if until >= 0 && s > uint64(until) {
			return nil
		}
		if i := bytes.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i] // drop continuation lines
		}
		w.Write(rec)
		w.WriteByte('\n')
		if until >= 0 && s == uint64(until) {
			return nil
		}
		if follow && time.Since(lastFlush) > 50*time.Millisecond {
			if err := w.Flush(); err != nil {
				return err
			}
			lastFlush = time.Now()
		}
		if follow {
			// A blocking read returns one record at a time; flush when idle too.
			if err := flushIfIdle(fd, w); err != nil {
				return err
			}
		}
	}
}

// flushIfIdle flushes buffered output when no further record is waiting, so a follower
// on the other end of SSH sees each record promptly.
func flushIfIdle(fd int, w *bufio.Writer) error {
	var r syscall.FdSet
	bits := int(unsafe.Sizeof(r.Bits[0])) * 8
	r.Bits[fd/bits] |= 1 << (uint(fd) % uint(bits))
	tv := syscall.Timeval{}
	n, err := syscall.Select(fd+1, &r, nil, nil, &tv)
	if err == nil && n == 0 {
		return w.Flush()
	}
	return nil
}
