// Package trace is the CRC-trace oracle: it reads userblk's trace lines (or the original
// report's own table) out of any kernel log text, groups them by transaction and says
// where two threads saw different bytes at the same address.
//
// A line holds, in the report's order: op, transaction id, start position, length,
// crc32, address (absent on the report's write lines), thread id; userblk adds cpu= and
// mode=. Timestamps, syslog prefixes, other kernel noise, interleaving and truncated
// lines are tolerated: a line that does not hold all mandatory columns is counted as
// unparsed and otherwise ignored.
package trace

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Event is one trace line.
type Event struct {
	Disk string `json:"disk,omitempty"`
	Op   string `json:"op"` // write, write1, read0, read1, read2, readx, read3, rfault, wfault
	Xid  uint64 `json:"xid"`
	Pos  uint64 `json:"pos"`
	Len  uint64 `json:"len"`
	CRC  uint32 `json:"crc"`
	Addr string `json:"addr,omitempty"`
	TID  int    `json:"tid"`
	CPU  int    `json:"cpu"` // -1 when the line has none
	Mode string `json:"mode,omitempty"`
	Line int    `json:"line"` // 1-based line in the input
	Raw  string `json:"raw"`
}

// Divergence kinds.
const (
	// KindCrossThread: two threads read different bytes through one address.
	KindCrossThread = "cross-thread divergence"
	// KindNeverArrived: the submitter still sees the bytes it had before the copy.
	KindNeverArrived = "data never arrived"
	// KindWriteMismatch: the daemon received other bytes than the submitter wrote.
	KindWriteMismatch = "write data differs"
	// KindUnstable: one thread saw the bytes change under it with nobody writing.
	KindUnstable = "unstable"
	// KindShortCopy: the daemon's copy through the handed-over address faulted part-way
	// (the mapping was already gone on its CPU).
	KindShortCopy = "short copy"
)

// Divergence is one transaction whose views disagree.
type Divergence struct {
	Disk   string  `json:"disk,omitempty"`
	Xid    uint64  `json:"xid"`
	Kind   string  `json:"kind"`
	Detail string  `json:"detail"`
	Events []Event `json:"events"`
}

// Result is what Analyze found.
type Result struct {
	Lines        int          `json:"lines"`
	Events       int          `json:"events"`
	Unparsed     int          `json:"unparsed"` // lines that look like trace lines but are cut short
	Transactions int          `json:"transactions"`
	Reads        int          `json:"reads"`  // read transactions with both views
	Writes       int          `json:"writes"` // write transactions with both views
	Divergences  []Divergence `json:"divergences"`
}

// Diverged is the number of transactions with a divergence.
func (r *Result) Diverged() int { return len(r.Divergences) }

var (
	lineRe = regexp.MustCompile(`(?:\b(\w*\d+):\s+)?\b(write1|write|read[0-3x]|rfault|wfault):?\s+([0-9a-f]{1,16})\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+([0-9a-f]{8,16})\s+(?:([0-9a-f]{8,16})\s+)?(\d{1,9})\b(?:\s+cpu=(\d+))?(?:\s+mode=(\w+))?`)
	// looseRe finds lines that start like trace lines, to count truncated ones.
	looseRe = regexp.MustCompile(`\b(write1|write|read[0-3x]|rfault|wfault):?\s+[0-9a-f]{8}\s`)
)

// ParseLine parses one line; ok is false when it holds no complete trace event.
func ParseLine(s string) (ev Event, ok bool) {
	m := lineRe.FindStringSubmatch(s)
	if m == nil {
		return ev, false
	}
	var err error
	ev.Disk, ev.Op, ev.Addr, ev.Mode = m[1], m[2], m[7], m[10]
	if ev.Xid, err = strconv.ParseUint(m[3], 16, 64); err != nil {
		return ev, false
	}
	if ev.Pos, err = strconv.ParseUint(m[4], 16, 64); err != nil {
		return ev, false
	}
	if ev.Len, err = strconv.ParseUint(m[5], 16, 64); err != nil {
		return ev, false
	}
	crc, err := strconv.ParseUint(m[6], 16, 64)
	if err != nil || (crc > 0xffffffff && !strings.HasSuffix(ev.Op, "fault")) {
		return ev, false
	}
	ev.CRC = uint32(crc)
	if ev.TID, err = strconv.Atoi(m[8]); err != nil {
		return ev, false
	}
	ev.CPU = -1
	if m[9] != "" {
		ev.CPU, _ = strconv.Atoi(m[9])
	}
	ev.Raw = strings.TrimSpace(s)
	return ev, true
}

type key struct {
	disk string
	xid  uint64
}

// Analyze reads log text and checks every transaction.
func Analyze(r io.Reader) (*Result, error) {
	res := &Result{Divergences: []Divergence{}}
	txs := map[key][]Event{}
	var order []key
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		res.Lines++
		l := sc.Text()
		ev, ok := ParseLine(l)
		if !ok {
			if looseRe.MatchString(l) {
				res.Unparsed++
			}
			continue
		}
		ev.Line = res.Lines
		res.Events++
		k := key{ev.Disk, ev.Xid}
		if _, seen := txs[k]; !seen {
			order = append(order, k)
		}
		txs[k] = append(txs[k], ev)
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	res.Transactions = len(order)
	for _, k := range order {
		evs := txs[k]
		if d := check(evs, res); d != nil {
			d.Disk, d.Xid, d.Events = k.disk, k.xid, evs
			res.Divergences = append(res.Divergences, *d)
		}
	}
	return res, nil
}

// AnalyzeString is Analyze on a string.
func AnalyzeString(s string) *Result {
	r, _ := Analyze(strings.NewReader(s))
	return r
}

func check(evs []Event, res *Result) *Divergence {
	v := map[string]Event{}
	for _, e := range evs {
		if _, dup := v[e.Op]; !dup {
			v[e.Op] = e
		}
	}
	for _, op := range []string{"rfault", "wfault"} {
		if f, ok := v[op]; ok {
			who := "submitter's segment"
			if op == "wfault" {
				res.Writes++
			} else {
				res.Reads++
			}
			return &Divergence{Kind: KindShortCopy, Detail: fmt.Sprintf(
				"daemon (tid %d, cpu %d) could not copy %d of %d bytes through the %s address %s: the mapping was gone on its CPU",
				f.TID, f.CPU, f.CRC, f.Len, who, f.Addr)}
		}
	}
	if w, ok := v["write"]; ok {
		w1, ok := v["write1"]
		if !ok {
			return nil
		}
		res.Writes++
		if w.CRC != w1.CRC {
			return &Divergence{Kind: KindWriteMismatch, Detail: fmt.Sprintf(
				"submitter (tid %d) wrote crc %08x at %s, daemon (tid %d) received crc %08x at %s",
				w.TID, w.CRC, w.Addr, w1.TID, w1.CRC, w1.Addr)}
		}
		return nil
	}
	r1, ok1 := v["read1"]
	r2, ok2 := v["read2"]
	if !ok1 || !ok2 {
		return nil
	}
	res.Reads++
	if r1.CRC != r2.CRC {
		kind := KindCrossThread
		extra := ""
		if r0, ok := v["read0"]; ok && r0.CRC == r2.CRC {
			kind = KindNeverArrived
			extra = " (the submitter still sees its before-copy bytes, read0)"
		}
		return &Divergence{Kind: kind, Detail: fmt.Sprintf(
			"daemon (tid %d) saw crc %08x at %s, submitter (tid %d) saw crc %08x at %s%s",
			r1.TID, r1.CRC, r1.Addr, r2.TID, r2.CRC, r2.Addr, extra)}
	}
	rx, okx := v["readx"]
	r3, ok3 := v["read3"]
	if okx && ok3 && rx.CRC != r3.CRC {
		return &Divergence{Kind: KindCrossThread, Detail: fmt.Sprintf(
			"later: daemon (tid %d) saw crc %08x, submitter (tid %d) saw crc %08x at %s",
			rx.TID, rx.CRC, r3.TID, r3.CRC, r3.Addr)}
	}
	if ok3 && r3.CRC != r2.CRC {
		return &Divergence{Kind: KindUnstable, Detail: fmt.Sprintf(
			"submitter (tid %d) saw crc %08x, then %08x at %s", r2.TID, r2.CRC, r3.CRC, r3.Addr)}
	}
	return nil
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
	return strings.Index("write write1 wfault read0 read1 rfault read2 readx read3", op)
}
