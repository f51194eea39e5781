package trace

import (
	"strconv"
	"strings"
)

// The trace events, as a record's first column names them, in the order of opIndex.
const (
	opWrite = iota
	opWrite1
	opWrite2
	opRead0
	opRead1
	opRead2
	opReadx
	opRead3
	opRfault
	opWfault
	numOps
)

// opIndex is op's place in the list above, or -1 for a word that is no trace event.
// (A switch: this runs for every token of every line that mentions read or write.)
func opIndex(op string) int {
	switch op {
	case "write":
		return opWrite
	case "write1":
		return opWrite1
	case "write2":
		return opWrite2
	case "read0":
		return opRead0
	case "read1":
		return opRead1
	case "read2":
		return opRead2
	case "readx":
		return opReadx
	case "read3":
		return opRead3
	case "rfault":
		return opRfault
	case "wfault":
		return opWfault
	}
	return -1
}

type start struct{ prefix, op, tok int } // byte offsets of the record and its op; tok: the op's token index

// field is one whitespace-separated token and where it starts.
type field struct {
	s   string
	off int
}

func fields(s string) []field { return appendFields(nil, s) }

// appendFields appends s's tokens to out (reused between lines by the Analyzer).
func appendFields(out []field, s string) []field {
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		j := i
		for j < len(s) && !isSpace(s[j]) {
			j++
		}
		if j > i {
			out = append(out, field{s[i:j], i})
		}
		i = j
	}
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// opStarts finds where trace records start in a line: an op token followed by a hex
// token, with the "userblkN:" token before it when there is one.
func opStarts(s string) []start { st, _ := appendStarts(nil, nil, s); return st }

// appendStarts appends the record starts of s to out; it returns the tokens it cut
// (in buf's storage) for the caller to parse a single record from.
func appendStarts(out []start, buf []field, s string) ([]start, []field) {
	if !strings.Contains(s, "read") && !strings.Contains(s, "write") && !strings.Contains(s, "fault") {
		return out, buf[:0]
	}
	f := appendFields(buf[:0], s)
	for i := 0; i+1 < len(f); i++ {
		if opIndex(strings.TrimSuffix(f[i].s, ":")) < 0 || !isHex(f[i+1].s, 1, 16) {
			continue
		}
		st := start{prefix: f[i].off, op: f[i].off, tok: i}
		if i > 0 && isDiskToken(f[i-1].s) {
			st.prefix = f[i-1].off
		}
		out = append(out, st)
	}
	return out, f
}

// isDiskToken matches the "userblk0:" prefix: word characters ending in a digit, then ':'.
func isDiskToken(t string) bool {
	if len(t) < 2 || t[len(t)-1] != ':' {
		return false
	}
	w := t[:len(t)-1]
	if w[len(w)-1] < '0' || w[len(w)-1] > '9' {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func isHex(t string, min, max int) bool {
	if len(t) < min || len(t) > max {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isDec(t string, max int) bool {
	if len(t) == 0 || len(t) > max {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	return true
}

// parseAt parses one record: seg starts at its prefix (or op) and op is the op token's
// offset in seg.
func parseAt(seg string, op int) (ev Event, ok bool) { return parseFields(nil, seg, op) }

func parseFields(buf []field, seg string, op int) (ev Event, ok bool) {
	if op > 0 {
		ev.Disk = strings.TrimSuffix(strings.TrimSpace(seg[:op]), ":")
	}
	return parseTokens(appendFields(buf[:0], seg[op:]), ev)
}

// parseTokens parses a record from its tokens, the op first; ev holds the disk.
func parseTokens(f []field, ev Event) (Event, bool) {
	if len(f) < 6 {
		return ev, false
	}
	ev.Op = strings.TrimSuffix(f[0].s, ":")
	fault := strings.HasSuffix(ev.Op, "fault")
	var err error
	if !isHex(f[1].s, 1, 16) || !isHex(f[2].s, 1, 16) || !isHex(f[3].s, 1, 16) || !isHex(f[4].s, 1, 16) {
		return ev, false
	}
	ev.Xid, _ = strconv.ParseUint(f[1].s, 16, 64)
	ev.Pos, _ = strconv.ParseUint(f[2].s, 16, 64)
	ev.Len, _ = strconv.ParseUint(f[3].s, 16, 64)
	ev.CRC, _ = strconv.ParseUint(f[4].s, 16, 64)
	if ev.CRC > 0xffffffff && !fault {
		return ev, false
	}
	rest := f[5:]
	switch {
	case len(rest) >= 2 && isHex(rest[0].s, 8, 16) && isDec(rest[1].s, 9):
		ev.Addr = strings.ToLower(rest[0].s)
		ev.TID, err = strconv.Atoi(rest[1].s)
		rest = rest[2:]
	case isDec(rest[0].s, 9):
		ev.TID, err = strconv.Atoi(rest[0].s)
		rest = rest[1:]
	default:
		return ev, false
	}
	if err != nil {
		return ev, false
	}
	ev.CPU = -1
	for _, kv := range rest {
		k, v, found := strings.Cut(kv.s, "=")
		if !found {
			break
		}
		switch k {
		case "cpu":
			if ev.CPU, err = strconv.Atoi(v); err != nil {
				return ev, false
			}
		case "mode":
			ev.Mode = v
		case "dev":
			ev.Dev = strings.ToLower(v)
		case "side":
			ev.Side = v
		}
	}
	return ev, true
}

// ParseLine parses one line; ok is false when it holds no complete trace event. A
// line holding two records gives the first.
func ParseLine(s string) (ev Event, ok bool) {
	st := opStarts(s)
	if len(st) == 0 {
		return ev, false
	}
	end := len(s)
	if len(st) > 1 {
		end = st[1].prefix
	}
	ev, ok = parseAt(s[st[0].prefix:end], st[0].op-st[0].prefix)
	if ok {
		ev.TS = stamp(s)
		ev.Raw = strings.TrimSpace(s)
	}
	return ev, ok
}

// stamp reads a "[  224.968247]" kernel timestamp in µs, or -1.
func stamp(s string) int64 {
	i := strings.IndexByte(s, '[')
	if i < 0 || i > 64 {
		return -1
	}
	j := strings.IndexByte(s[i:], ']')
	if j < 0 {
		return -1
	}
	sec, frac, ok := strings.Cut(strings.TrimSpace(s[i+1:i+j]), ".")
	if !ok || !isDec(sec, 12) || !isDec(frac, 9) {
		return -1
	}
	a, _ := strconv.ParseInt(sec, 10, 64)
	b, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return a*1e6 + b
}

// FormatLine prints ev as userblk prints a trace line (kmod/userblk.c,
// userblk_trace_line), without the kernel's timestamp: the inverse of ParseLine, for
// synthetic logs (benchmarks, tests).
func FormatLine(ev Event) string {
	var b strings.Builder
	b.Grow(128)
	if ev.Disk != "" {
		b.WriteString(ev.Disk)
		b.WriteString(": ")
	}
	op := ev.Op
	for len(op) < 6 {
		op += " "
	}
	b.WriteString(op)
	for _, v := range []struct {
		x     uint64
		width int
	}{{ev.Xid, 8}, {ev.Pos, 16}, {ev.Len, 16}, {ev.CRC, 16}} {
		b.WriteByte(' ')
		h := strconv.FormatUint(v.x, 16)
		for i := len(h); i < v.width; i++ {
			b.WriteByte('0')
		}
		b.WriteString(h)
	}
	if ev.Addr != "" {
		b.WriteByte(' ')
		b.WriteString(ev.Addr)
	}
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(ev.TID))
	if ev.CPU >= 0 {
		b.WriteString(" cpu=")
		b.WriteString(strconv.Itoa(ev.CPU))
	}
	for _, kv := range [][2]string{{"mode", ev.Mode}, {"dev", ev.Dev}, {"side", ev.Side}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + "=" + kv[1])
		}
	}
	return b.String()
}
