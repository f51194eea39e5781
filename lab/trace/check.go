package trace

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Judging one transaction whose lines are all in: whether its lines agree (integrity),
// and whether its two views of the data do (check).

// integrity checks that a transaction's lines agree: the same pos and len everywhere,
// the same handed-over address where the mode hands one over, and no event twice with
// different values.
func integrity(evs []Event) *Problem {
	first := &evs[0]
	addr := ""
	var seen [numOps]int // 1 + the index of each op's first event
	for i := range evs {
		e := &evs[i]
		if e.Pos != first.Pos || e.Len != first.Len {
			return &Problem{Kind: IntegrityDisagree, Detail: fmt.Sprintf(
				"line %d says pos %x len %x, line %d says pos %x len %x", first.Line, first.Pos, first.Len, e.Line, e.Pos, e.Len)}
		}
		if handsOver(e.Mode) && e.Addr != "" && !strings.HasSuffix(e.Op, "fault") {
			if addr == "" {
				addr = e.Addr
			} else if !strings.EqualFold(addr, e.Addr) {
				return &Problem{Kind: IntegrityDisagree, Detail: fmt.Sprintf(
					"the handed-over address is %s on one line and %s on line %d", addr, e.Addr, e.Line)}
			}
		}
		o := opIndex(e.Op)
		if o < 0 {
			continue
		}
		if j := seen[o]; j > 0 {
			p := &evs[j-1]
			if p.CRC != e.CRC || p.TID != e.TID || !strings.EqualFold(p.Addr, e.Addr) {
				return &Problem{Kind: IntegrityDuplicate, Detail: fmt.Sprintf(
					"%s printed twice: crc %08x tid %d on line %d, crc %08x tid %d on line %d", e.Op, p.CRC, p.TID, p.Line, e.CRC, e.TID, e.Line)}
			}
			continue
		}
		seen[o] = i + 1
	}
	return nil
}

// handsOver says whether one address is shared by both threads in mode ("" is the
// original report's table, which did).
func handsOver(mode string) bool {
	return mode == "" || mode == "atomic" || mode == "local" || mode == "atomic-sleep" || mode == "kmap"
}

// check judges a transaction whose lines agree. It counts the transaction in res and
// says whether it diverged and how; the Detail sentence is only written when detail
// is set (most divergences of a buggy run are counted, not kept).
func check(evs []Event, res *Result, detail bool) (d Divergence, diverged bool) {
	var v [numOps]*Event // each op's first event
	for i := range evs {
		if o := opIndex(evs[i].Op); o >= 0 && v[o] == nil {
			v[o] = &evs[i]
		}
	}
	// diverge ends the check with a divergence of kind, described only when detail.
	diverge := func(kind, format string, args ...any) (Divergence, bool) {
		d.Kind = kind
		if detail {
			d.Detail = fmt.Sprintf(format, args...)
		}
		return d, true
	}
	for _, o := range []int{opWfault, opRfault} {
		f := v[o]
		if f == nil {
			continue
		}
		if o == opWfault {
			res.Writes++
		} else {
			res.Reads++
		}
		if f.Side != "kernel" {
			// The user buffer faulted (or the line does not say): the daemon's
			// problem, not a stale mapping.
			res.UserFaults++
			return d, false
		}
		return diverge(KindShortCopy,
			"daemon (tid %d, cpu %d) could not copy %d of %d bytes through the submitter's address %s: the mapping was gone on its CPU",
			f.TID, f.CPU, f.CRC, f.Len, f.Addr)
	}
	if w := v[opWrite]; w != nil {
		w1 := v[opWrite1]
		if w1 == nil {
			return d, false
		}
		res.Writes++
		still := ""
		if w2 := v[opWrite2]; w2 != nil {
			// The submitter looked again after the daemon's copy. If it still sees
			// what it wrote while the daemon received other bytes, the page did not
			// change: the two threads saw different bytes at one address. If the page
			// changed under I/O (filesystem metadata may), nothing is proven.
			if w2.CRC != w.CRC {
				res.Writes--
				res.Unstable++
				return d, false
			}
			still = " and still sees it"
		}
		if w1.CRC == w.CRC {
			return d, false
		}
		return diverge(KindWriteMismatch,
			"submitter (tid %d) wrote crc %08x at %s%s, daemon (tid %d) received crc %08x at %s",
			w.TID, w.CRC, w.Addr, still, w1.TID, w1.CRC, w1.Addr)
	}
	r1, r2 := v[opRead1], v[opRead2]
	if r1 == nil || r2 == nil {
		return d, false
	}
	res.Reads++
	if r1.CRC != r2.CRC {
		kind, extra := KindCrossThread, ""
		if r0 := v[opRead0]; r0 != nil && r0.CRC == r2.CRC {
			kind, extra = KindNeverArrived, " (the submitter still sees its before-copy bytes, read0)"
		}
		return diverge(kind,
			"daemon (tid %d) saw crc %08x at %s, submitter (tid %d) saw crc %08x at %s%s",
			r1.TID, r1.CRC, r1.Addr, r2.TID, r2.CRC, r2.Addr, extra)
	}
	rx, r3 := v[opReadx], v[opRead3]
	if rx != nil && r3 != nil && rx.CRC != r3.CRC {
		return diverge(KindCrossThread,
			"later: daemon (tid %d) saw crc %08x, submitter (tid %d) saw crc %08x at %s",
			rx.TID, rx.CRC, r3.TID, r3.CRC, r3.Addr)
	}
	if r3 != nil && r3.CRC != r2.CRC {
		return diverge(KindUnstable,
			"submitter (tid %d) saw crc %08x, then %08x at %s",
			r2.TID, r2.CRC, r3.CRC, r3.Addr)
	}
	return d, false
}

// Table prints a transaction like the original report's table.
func Table(evs []Event) string {
	var b strings.Builder
	b.WriteString("oper    trans id start pos        length           crc32            address  thread  cpu\n")
	sorted := append([]Event(nil), evs...)
	sort.SliceStable(sorted, func(i, j int) bool { return opRank(sorted[i].Op) < opRank(sorted[j].Op) })
	for _, e := range sorted {
		cpu := ""
		if e.CPU >= 0 {
			cpu = strconv.Itoa(e.CPU)
		}
		addr := e.Addr
		if addr == "" {
			addr = strings.Repeat(" ", 8)
		}
		fmt.Fprintf(&b, "%-7s %08x %016x %016x %016x %s %-7d %s\n", e.Op+":", e.Xid, e.Pos, e.Len, e.CRC, addr, e.TID, cpu)
	}
	return b.String()
}

func opRank(op string) int {
	return strings.Index("write write1 wfault write2 read0 read1 rfault read2 readx read3", op)
}
