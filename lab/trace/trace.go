// Package trace is the CRC-trace oracle: it reads userblk's trace lines (or the original
// report's own table) out of any kernel log text, groups them by transaction and says
// where two threads saw different bytes at the same address.
//
// The line format is defined once, in kmod/userblk.c next to userblk_trace_line(); in
// short, after an optional "userblkN:" prefix:
//
//	op xid pos len crc32 [address] tid [cpu=N] [mode=M] [dev=ID] [side=kernel|user]
//
// op is write, write1, write2, read0, read1, read2, readx, read3, rfault or wfault; xid, pos,
// len, crc32 and address are hex (either case), tid is decimal. dev= names the disk
// instance (random per disk, so transactions of two disks, or of one disk created twice,
// never merge); lines without it (the original report's table) are grouped by their
// prefix. On rfault/wfault lines the crc32 column holds the bytes not copied and side=
// says whose memory faulted.
//
// The oracle streams: memory is bounded by the transactions still open (a transaction
// closes when its last event arrives, or when it has aged past MaxOpen newer ones), and
// by Keep divergences kept in full; counts cover everything. It trusts nothing: a
// transaction whose lines disagree on pos, len or a handed-over address, or that holds
// two different lines for one event, is an integrity error, never a divergence; lines
// that look like trace lines but do not parse, lines holding two records, and lines too
// long to read are counted.
package trace

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Event is one trace line.
type Event struct {
	Disk string `json:"disk,omitempty"` // the line's prefix, e.g. userblk0
	Dev  string `json:"dev,omitempty"`  // disk instance id (dev=)
	Op   string `json:"op"`             // write, write1, write2, read0, read1, read2, readx, read3, rfault, wfault
	Xid  uint64 `json:"xid"`
	Pos  uint64 `json:"pos"`
	Len  uint64 `json:"len"`
	CRC  uint64 `json:"crc"` // crc32; on fault lines the bytes not copied
	Addr string `json:"addr,omitempty"`
	TID  int    `json:"tid"`
	CPU  int    `json:"cpu"` // -1 when the line has none
	Mode string `json:"mode,omitempty"`
	Side string `json:"side,omitempty"` // fault lines: kernel or user
	TS   int64  `json:"ts_us"`          // kernel timestamp in µs, -1 when the line has none
	Line int    `json:"line"`           // 1-based line in the input
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
	// on the kernel side (the mapping was already gone on its CPU).
	KindShortCopy = "short copy"
)

// Integrity problem kinds: the trace cannot be trusted for these transactions.
const (
	IntegrityDisagree  = "fields disagree"       // pos, len or handed-over address differ within a transaction
	IntegrityDuplicate = "conflicting duplicate" // one event printed twice with different values
)

// Divergence is one transaction whose views disagree.
type Divergence struct {
	Disk   string  `json:"disk,omitempty"`
	Dev    string  `json:"dev,omitempty"`
	Xid    uint64  `json:"xid"`
	Kind   string  `json:"kind"`
	Detail string  `json:"detail"`
	TS     int64   `json:"ts_us"` // first event's timestamp, -1 when unknown
	Events []Event `json:"events"`
}

// Problem is one transaction the oracle refused to judge.
type Problem struct {
	Disk   string  `json:"disk,omitempty"`
	Dev    string  `json:"dev,omitempty"`
	Xid    uint64  `json:"xid"`
	Kind   string  `json:"kind"`
	Detail string  `json:"detail"`
	Events []Event `json:"events"`
}

// Result is what the oracle found.
type Result struct {
	Lines        int `json:"lines"`
	Events       int `json:"events"`
	Unparsed     int `json:"unparsed"` // lines that look like trace lines but do not parse
	Merged       int `json:"merged"`   // lines holding more than one record
	Long         int `json:"long"`     // lines longer than MaxLine, skipped
	Transactions int `json:"transactions"`
	Reads        int `json:"reads"`       // read transactions with both views
	Writes       int `json:"writes"`      // write transactions with both views
	UserFaults   int `json:"user_faults"` // copies that faulted on the user buffer: not the bug
	// Unstable counts writes whose page changed while under I/O (the submitter's
	// write2 differs from its write): both threads may rightly see other bytes, so
	// such a write proves nothing either way.
	Unstable int `json:"unstable_writes"`
	// DivergedTotal counts every diverging transaction; Divergences keeps the first Keep.
	DivergedTotal int            `json:"diverged"`
	Kinds         map[string]int `json:"kinds"`
	Divergences   []Divergence   `json:"divergences"`
	// DivergenceTS is each divergence's first timestamp (µs; -1 unknown), in order,
	// for the first MaxTimes divergences.
	DivergenceTS []int64 `json:"divergence_ts_us,omitempty"`
	// IntegrityTotal counts transactions with integrity problems; Problems keeps Keep.
	IntegrityTotal int       `json:"integrity_errors"`
	Problems       []Problem `json:"problems,omitempty"`
	// HandedPages are the distinct pages (address &^ 0xfff) that a mode handing a
	// CPU-local mapping to another thread (atomic, local) printed; a crash whose faulting
	// address is in one of them is this bug. At most MaxPages are kept.
	HandedPages []uint64 `json:"handed_pages,omitempty"`
	// FirstTS and LastTS bound the events' timestamps (µs; -1 unknown).
	FirstTS int64 `json:"first_ts_us"`
	LastTS  int64 `json:"last_ts_us"`
}

// Diverged is the number of transactions with a divergence.
func (r *Result) Diverged() int { return r.DivergedTotal }

// Limits of one Analyzer.
const (
	MaxLine = 1 << 20 // longer lines are counted in Long and skipped
	MaxOpen = 1 << 16 // open transactions before the oldest is judged as it stands
	Keep    = 50      // divergences and problems kept in full
	// MaxPages bounds HandedPages (fixmap slots are few; this is generous).
	MaxPages = 4096
	// MaxTimes bounds DivergenceTS, so memory does not grow with the divergences.
	MaxTimes = 10000
)

type key struct {
	disk, dev string
	xid       uint64
}

type tx struct {
	key  key
	evs  []Event
	seq  uint64 // arrival order, for ageing
	prev *tx
	next *tx
}

// Analyzer is the streaming oracle. Feed it lines (Line) or kernel-log records
// (Record), then call Finish. OnDivergence, if set, is called as each diverging
// transaction is judged (the lab's stop rule listens here).
type Analyzer struct {
	OnDivergence func(Divergence)
	Keep         int // divergences kept in full (default Keep)
	MaxOpen      int // open transactions (default MaxOpen)

	res        Result
	starts     []start
	fbuf       []field
	pages      map[uint64]bool
	addrs      map[string]bool // addresses already looked at for HandedPages
	open       map[key]*tx
	head, tail *tx // open transactions, oldest first
	seq        uint64
	free       []*tx // judged transactions nothing refers to, for reuse
}

// freeTx bounds the transactions kept for reuse.
const freeTx = 256

// NewAnalyzer returns an empty oracle.
func NewAnalyzer() *Analyzer {
	return &Analyzer{Keep: Keep, MaxOpen: MaxOpen, open: map[key]*tx{}, pages: map[uint64]bool{}, addrs: map[string]bool{},
		fbuf: make([]field, 0, 48), starts: make([]start, 0, 4),
		res: Result{Kinds: map[string]int{}, Divergences: []Divergence{}, FirstTS: -1, LastTS: -1}}
}

// Line feeds one line of log text (a "[ ts]" prefix gives the timestamp).
func (a *Analyzer) Line(s string) {
	a.res.Lines++
	a.feed(s, -1)
}

// Record feeds one kernel-log record whose timestamp is known (µs).
func (a *Analyzer) Record(tsUS int64, msg string) {
	a.res.Lines++
	a.feed(msg, tsUS)
}

// LongLine counts a line that was too long to read.
func (a *Analyzer) LongLine() {
	a.res.Lines++
	a.res.Long++
}

func (a *Analyzer) feed(s string, ts int64) {
	a.starts, a.fbuf = appendStarts(a.starts[:0], a.fbuf, s)
	starts := a.starts
	if len(starts) == 0 {
		return
	}
	if len(starts) > 1 {
		a.res.Merged++
	}
	if ts < 0 {
		ts = stamp(s)
	}
	for i, st := range starts {
		end := len(s)
		if i+1 < len(starts) {
			end = starts[i+1].prefix
		}
		var ev Event
		var ok bool
		if len(starts) == 1 {
			// One record: parse the tokens appendStarts already cut.
			if st.prefix != st.op {
				ev.Disk = strings.TrimSuffix(a.fbuf[st.tok-1].s, ":")
			}
			ev, ok = parseTokens(a.fbuf[st.tok:], ev)
		} else {
			ev, ok = parseFields(nil, s[st.prefix:end], st.op-st.prefix)
		}
		if !ok {
			a.res.Unparsed++
			continue
		}
		ev.Line, ev.TS = a.res.Lines, ts
		ev.Raw = strings.TrimSpace(s)
		a.add(ev)
	}
}

func (a *Analyzer) add(ev Event) {
	r := &a.res
	r.Events++
	if ev.TS >= 0 {
		if r.FirstTS < 0 {
			r.FirstTS = ev.TS
		}
		r.LastTS = ev.TS
	}
	if (ev.Mode == "atomic" || ev.Mode == "local" || ev.Mode == "atomic-sleep") && ev.Addr != "" && len(a.pages) < MaxPages && !a.addrs[ev.Addr] {
		a.addrs[ev.Addr] = true
		if v, err := strconv.ParseUint(ev.Addr, 16, 64); err == nil && !a.pages[v&^0xfff] {
			a.pages[v&^0xfff] = true
			r.HandedPages = append(r.HandedPages, v&^0xfff)
		}
	}
	k := key{ev.Disk, ev.Dev, ev.Xid}
	if ev.Dev != "" {
		k.disk = "" // the instance id names the disk on its own
	}
	t := a.open[k]
	if t == nil {
		r.Transactions++
		if n := len(a.free); n > 0 {
			t, a.free = a.free[n-1], a.free[:n-1]
			t.key = k
		} else {
			t = &tx{key: k, evs: make([]Event, 0, 6)} // a read has five events, a write three
		}
		a.open[k] = t
		a.push(t)
	}
	t.evs = append(t.evs, ev)
	if complete(t.evs) {
		a.close(t)
	}
	for len(a.open) > a.MaxOpen {
		a.close(a.head)
	}
}

func (a *Analyzer) push(t *tx) {
	a.seq++
	t.seq = a.seq
	t.prev = a.tail
	if a.tail != nil {
		a.tail.next = t
	} else {
		a.head = t
	}
	a.tail = t
}

func (a *Analyzer) close(t *tx) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		a.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		a.tail = t.prev
	}
	delete(a.open, t.key)
	if !a.judge(t) && len(a.free) < freeTx {
		// Nothing holds on to the transaction: its event slice serves the next one.
		*t = tx{evs: t.evs[:0]}
		a.free = append(a.free, t)
	}
}

// complete says whether a transaction has its last event: write2 (or a fault) for a
// write, read3 for a read. A write traced without write2 (an older module, the
// original report's table) closes when it ages out or at the end.
func complete(evs []Event) bool {
	last := evs[len(evs)-1].Op
	return last == "write2" || last == "wfault" || last == "read3"
}

// judge checks a closed transaction. It says whether the result keeps the
// transaction's events (else the caller may reuse them).
func (a *Analyzer) judge(t *tx) (kept bool) {
	r := &a.res
	if p := integrity(t.evs); p != nil {
		r.IntegrityTotal++
		if len(r.Problems) < a.Keep {
			p.Disk, p.Dev, p.Xid, p.Events = t.evs[0].Disk, t.key.dev, t.key.xid, t.evs
			r.Problems = append(r.Problems, *p)
			return true
		}
		return false
	}
	keep := len(r.Divergences) < a.Keep
	d, diverged := check(t.evs, r, keep || a.OnDivergence != nil)
	if !diverged {
		return false
	}
	d.Disk, d.Dev, d.Xid, d.TS = t.evs[0].Disk, t.key.dev, t.key.xid, t.evs[0].TS
	d.Events = t.evs
	r.DivergedTotal++
	r.Kinds[d.Kind]++
	if len(r.DivergenceTS) < MaxTimes {
		r.DivergenceTS = append(r.DivergenceTS, d.TS)
	}
	if keep {
		r.Divergences = append(r.Divergences, d)
	}
	if a.OnDivergence != nil {
		a.OnDivergence(d)
	}
	return keep
}

// Finish judges the transactions still open and returns the result.
func (a *Analyzer) Finish() *Result {
	for a.head != nil {
		a.close(a.head)
	}
	return &a.res
}

// Snapshot returns the counts so far without judging open transactions.
func (a *Analyzer) Snapshot() Result {
	r := a.res
	r.Kinds = map[string]int{}
	for k, v := range a.res.Kinds {
		r.Kinds[k] = v
	}
	return r
}

// ErrNoEvents is returned by Analyze for input without a single trace event.
var ErrNoEvents = errors.New("no trace events")

// Analyze reads log text and checks every transaction. Read errors are returned with
// what was found so far; lines over MaxLine are counted and skipped.
func Analyze(r io.Reader) (*Result, error) {
	a := NewAnalyzer()
	err := ReadLines(r, a.Line, a.LongLine)
	return a.Finish(), err
}

// ReadLines calls line for each line of r and long for each line over MaxLine.
func ReadLines(r io.Reader, line func(string), long func()) error {
	br := bufio.NewReaderSize(r, 256*1024)
	var acc []byte
	tooLong := false
	for {
		frag, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if !tooLong {
				acc = append(acc, frag...)
				if len(acc) > MaxLine {
					tooLong, acc = true, acc[:0]
				}
			}
			continue
		case err != nil && err != io.EOF:
			return err
		}
		if len(frag) > 0 || len(acc) > 0 {
			switch {
			case tooLong:
				long()
			case len(acc) > 0:
				acc = append(acc, frag...)
				if len(acc) > MaxLine {
					long()
				} else {
					line(string(bytes.TrimRight(acc, "\r\n")))
				}
			default:
				line(string(bytes.TrimRight(frag, "\r\n")))
			}
		}
		acc, tooLong = acc[:0], false
		if err == io.EOF {
			return nil
		}
	}
}

// AnalyzeString is Analyze on a string.
func AnalyzeString(s string) *Result {
	r, _ := Analyze(strings.NewReader(s))
	return r
}
