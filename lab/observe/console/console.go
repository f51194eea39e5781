// Package console finds kernel crashes in console or kernel-log text: the patterns LAVA
// and syzkaller use, each report with a stable title a person can search for, the lines
// that make it, its stack frames (with the module each is in) and, for page faults, the
// faulting address. The lab's verdict uses frames and address to decide whether a crash
// belongs to the module under test. A Scanner reads line by line, so the lab's crash
// watcher looks only at new output.
package console

import (
	"regexp"
	"strconv"
	"strings"
)

// Kinds of report.
const (
	KindPanic   = "panic"
	KindOops    = "oops"
	KindBug     = "bug"
	KindWarning = "warning"
	KindLockup  = "lockup" // soft or hard lockup: a CPU stuck
	KindStall   = "stall"  // RCU stall
	KindHung    = "hung"   // a task blocked too long
)

// Report is one crash found in a log.
type Report struct {
	Title string `json:"title"` // stable: "BUG: unable to handle page fault in userblk_complete"
	Kind  string `json:"kind"`
	Line  int    `json:"line"` // 1-based line of the first matching line
	Text  string `json:"text"` // the report's lines
	// Frames are the report's code locations, innermost first: the PC line, then the
	// call trace (frames the kernel marks unreliable with "?" are left out).
	Frames []Frame `json:"frames,omitempty"`
	// FaultAddr is the address a page fault report names, 0 when none.
	FaultAddr uint64 `json:"fault_addr,omitempty"`
	// Blocked names the task a hung-task report is about ("khugepaged:43").
	Blocked string `json:"blocked,omitempty"`
}

// Frame is one code location in a report.
type Frame struct {
	Func   string `json:"func"`
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	Module string `json:"module,omitempty"` // "" for the kernel itself
	// Source is file:line, filled in by a symbolizer for the job's own modules.
	Source string `json:"source,omitempty"`
}

// String prints the frame the way the kernel does, plus its source line when known.
func (f Frame) String() string {
	s := f.Func + "+0x" + strconv.FormatUint(f.Offset, 16) + "/0x" + strconv.FormatUint(f.Size, 16)
	if f.Module != "" {
		s += " [" + f.Module + "]"
	}
	if f.Source != "" {
		s += " (" + f.Source + ")"
	}
	return s
}

// Hang reports whether the report is about something stuck rather than broken.
func (r *Report) Hang() bool {
	return r.Kind == KindLockup || r.Kind == KindStall || r.Kind == KindHung
}

type pattern struct {
	kind  string
	re    *regexp.Regexp
	title string // prefix of the title; the function is added when found
	// module: blame the first frame in a module when there is one. For reports about
	// the context code ran in (a sleep while atomic, a lock order), the innermost
	// frames are the scheduler's or lockdep's, and the caller that did it is the news.
	module bool
}

// Order matters: the first pattern that matches a line wins.
var patterns = []pattern{
	{kind: KindPanic, re: regexp.MustCompile(`Kernel panic - not syncing: ?(.*)`), title: "kernel panic: "},
	{kind: KindOops, re: regexp.MustCompile(`Unable to handle kernel (paging request|NULL pointer dereference)`), title: "BUG: unable to handle kernel paging request"},
	{kind: KindOops, re: regexp.MustCompile(`BUG: unable to handle (page fault|kernel paging request|kernel NULL pointer dereference)`), title: "BUG: unable to handle page fault"},
	{kind: KindBug, re: regexp.MustCompile(`kernel BUG at ([^ ]+)`), title: "kernel BUG"},
	{kind: KindLockup, re: regexp.MustCompile(`BUG: soft lockup|watchdog: Watchdog detected hard LOCKUP|NMI watchdog: .*hard LOCKUP`), title: "BUG: soft lockup"},
	// The debug kernels' reports (KASAN, KFENCE, lockdep, DEBUG_ATOMIC_SLEEP,
	// DEBUG_LIST, UBSAN), titled as syzkaller titles them.
	{kind: KindBug, re: regexp.MustCompile(`BUG: KASAN: ([\w-]+) in `), title: "KASAN: "},
	{kind: KindBug, re: regexp.MustCompile(`BUG: KFENCE: ([\w-]+(?: (?:read|write))?) in `), title: "KFENCE: "},
	{kind: KindBug, re: regexp.MustCompile(`BUG: (sleeping function called from invalid context|scheduling while atomic|Invalid wait context)`), title: "BUG: ", module: true},
	{kind: KindBug, re: regexp.MustCompile(`WARNING: (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|bad unlock balance detected|suspicious RCU usage|held lock freed|lock held when returning to user space)`), title: "", module: true},
	{kind: KindBug, re: regexp.MustCompile(`(list_add corruption|list_del corruption)`), title: "", module: true},
	{kind: KindBug, re: regexp.MustCompile(`UBSAN: ([\w-]+) in (\S+)`), title: "UBSAN: "},
	{kind: KindBug, re: regexp.MustCompile(`BUG: (spinlock|bad page|Bad page)`), title: "BUG: "},
	{kind: KindLockup, re: regexp.MustCompile(`BUG: workqueue lockup`), title: "BUG: workqueue lockup"},
	{kind: KindStall, re: regexp.MustCompile(`rcu: INFO: rcu_\w+ (self-)?detected stall|rcu_\w+ detected stalls? on CPUs`), title: "INFO: rcu detected stall"},
	{kind: KindHung, re: regexp.MustCompile(`INFO: task (\S+) blocked for more than \d+ seconds`), title: "INFO: task hung"},
	{kind: KindOops, re: regexp.MustCompile(`Internal error: (.*)`), title: "Internal error"},
	{kind: KindOops, re: regexp.MustCompile(`Unhandled fault: (.*)`), title: "Unhandled fault"},
	{kind: KindOops, re: regexp.MustCompile(`(general protection fault|Oops: \d+|Oops - )`), title: "Oops"},
	{kind: KindBug, re: regexp.MustCompile(`\bBUG: (.*)`), title: "BUG: "},
	{kind: KindWarning, re: regexp.MustCompile(`WARNING: CPU: \d+ PID: \d+ at ([^ ]+)`), title: "WARNING"},
}

var (
	pcRe     = regexp.MustCompile(`(?:PC is at|RIP: [0-9a-f]{4}:|EIP: |pc : |EIP is at )\s*(?:\[<[0-9a-f]+>\]\s*)?([A-Za-z_][\w.]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)(?:\s+\[(\w+)\])?`)
	endRe    = regexp.MustCompile(`---\[ end (trace|Kernel panic)|^\s*$`)
	prefixRe = regexp.MustCompile(`^(?:<\d+>)?(?:\d+,\d+,\d+,[^;]*;)?(?:\[\s*\d+\.\d+\]\s*)?(?:\[\s*[CT]\d+\]\s*)?`)
	// frameRe finds fn+0xoff/0xsize [module] anywhere in a call-trace line (x86's
	// " fn+0x1/0x2 [mod]" and ARM's " a from fn+0x1/0x2 [mod]" alike).
	heldRe    = regexp.MustCompile(`^\s*#\d+: [0-9a-f]+ \(.*\)\{.*\}, at: `)
	frameRe   = regexp.MustCompile(`(\?\s+)?\(?([A-Za-z_][\w.]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)\)?(?:\s+\[(\w+)\])?`)
	faultRe   = regexp.MustCompile(`(?:at virtual address|for address:?|at address)\s+(?:0x)?([0-9a-fA-F]{8,16})`)
	ignoreFns = map[string]bool{"dump_stack": true, "dump_stack_lvl": true, "show_stack": true, "panic": true,
		"__warn": true, "warn_slowpath_fmt": true, "die": true, "do_exit": true, "make_task_dead": true,
		"__do_kernel_fault": true, "do_page_fault": true, "do_DataAbort": true, "__dabt_svc": true,
		"page_fault_oops": true, "exc_page_fault": true, "asm_exc_page_fault": true, "handle_page_fault": true,
		// the debug reports' own machinery
		"__might_sleep": true, "__might_resched": true, "__might_fault": true, "__schedule_bug": true,
		"__schedule": true, "schedule": true, "schedule_timeout": true, "kasan_report": true,
		"print_report": true, "kfence_report_error": true, "__lock_acquire": true, "lock_acquire": true,
		"print_circular_bug": true, "check_noncircular": true, "__list_add_valid_or_report": true,
		"__list_del_entry_valid_or_report": true, "ubsan_epilogue": true}
)

// MaxReports is how many reports a Scanner keeps; later ones are only counted.
const MaxReports = 100

// maxBody is how many lines one report may span.
const maxBody = 80

// Scanner finds reports line by line.
type Scanner struct {
	line           int
	pending        *Report
	pendingPattern pattern
	body           []string
	reports        []Report
	dropped        int
}

// Line feeds one line (without its newline).
func (s *Scanner) Line(l string) {
	s.line++
	if s.pending != nil {
		s.body = append(s.body, l)
		if (len(s.body) > 1 && endRe.MatchString(prefixRe.ReplaceAllString(l, ""))) || len(s.body) >= maxBody {
			s.finish()
		}
		return
	}
	// The filter first: stripping the prefix only removes text, so a line it passes
	// over holds no pattern either, and the regexp runs for the few lines left.
	if !mayMatch(l) {
		return
	}
	c := prefixRe.ReplaceAllString(strings.TrimRight(l, "\r"), "")
	for _, p := range patterns {
		m := p.re.FindStringSubmatch(c)
		if m == nil {
			continue
		}
		s.pending = &Report{Kind: p.kind, Line: s.line}
		s.body = []string{l}
		s.pending.Title = p.title
		s.pending.Text = strings.Join(m, "\x00") // the match, until finish builds the title
		s.pendingPattern = p
		return
	}
}

// mayMatch is a cheap filter before the patterns.
func mayMatch(l string) bool {
	return strings.Contains(l, "BUG") || strings.Contains(l, "panic") || strings.Contains(l, "Unable") ||
		strings.Contains(l, "INFO:") || strings.Contains(l, "rror") || strings.Contains(l, "fault") ||
		strings.Contains(l, "Oops") || strings.Contains(l, "WARNING") || strings.Contains(l, "LOCKUP") ||
		strings.Contains(l, "stall") || strings.Contains(l, "UBSAN") || strings.Contains(l, "corruption")
}

func (s *Scanner) finish() {
	r := s.pending
	m := strings.Split(r.Text, "\x00")
	r.Text = strings.Join(s.body, "\n")
	r.Frames = frames(s.body)
	r.Title = title(s.pendingPattern, m, r.Frames)
	if r.Kind == KindOops || r.Kind == KindPanic || r.Kind == KindBug {
		for _, l := range s.body {
			if f := faultRe.FindStringSubmatch(l); f != nil {
				r.FaultAddr, _ = strconv.ParseUint(f[1], 16, 64)
				break
			}
		}
	}
	if r.Kind == KindHung && len(m) > 1 {
		r.Blocked = m[1]
	}
	if len(s.reports) < MaxReports {
		s.reports = append(s.reports, *r)
	} else {
		s.dropped++
	}
	s.pending, s.body = nil, nil
}

// Reports returns the reports found so far, finishing one still being read.
func (s *Scanner) Reports() []Report {
	if s.pending != nil {
		s.finish()
	}
	return s.reports
}

// Peek returns the reports so far, including one still being read, without finishing it.
func (s *Scanner) Peek() []Report {
	out := s.reports
	if s.pending != nil {
		out = append(out[:len(out):len(out)], *s.pending)
	}
	return out
}

// Fatal reports whether a crash or hang report has begun (it may still be being read).
func (s *Scanner) Fatal() bool {
	if s.pending != nil && s.pending.Kind != KindWarning {
		return true
	}
	return Fatal(s.reports)
}

// Dropped is how many reports were found past MaxReports.
func (s *Scanner) Dropped() int { return s.dropped }

// Find returns every crash report in text, in order. Warnings are reported too (Kind
// "warning"); Fatal tells whether any report should fail a run.
func Find(text string) []Report {
	var s Scanner
	for _, l := range strings.Split(text, "\n") {
		s.Line(l)
	}
	return s.Reports()
}

// Fatal reports whether any report is a crash or hang rather than a warning.
func Fatal(reps []Report) bool {
	for _, r := range reps {
		if r.Kind != KindWarning {
			return true
		}
	}
	return false
}

// First returns the first fatal report, or the first report, or nil.
func First(reps []Report) *Report {
	for i := range reps {
		if reps[i].Kind != KindWarning {
			return &reps[i]
		}
	}
	if len(reps) > 0 {
		return &reps[0]
	}
	return nil
}

// frames reads the report's code locations, innermost first, each once (ARM prints
// the LR's function again as the first call-trace entry).
func frames(body []string) []Frame {
	var out []Frame
	seen := map[Frame]bool{}
	add := func(f Frame) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, l := range body {
		if m := pcRe.FindStringSubmatch(l); m != nil {
			add(frame(m[1], m[2], m[3], m[4]))
			break
		}
	}
	for _, l := range body {
		c := prefixRe.ReplaceAllString(l, "")
		// lockdep's lists of locks held ("#4: … (plant_mutex){+.+.}-{3:3}, at: fn+…")
		// say where each lock was taken, not where the kernel complained.
		if pcRe.MatchString(c) || strings.Contains(c, "Stopper:") || strings.Contains(c, "allocated at") || heldRe.MatchString(c) {
			continue
		}
		for _, m := range frameRe.FindAllStringSubmatch(c, -1) {
			if m[1] != "" { // "? fn+0x…": not reliable
				continue
			}
			add(frame(m[2], m[3], m[4], m[5]))
		}
	}
	return out
}

func frame(fn, off, size, mod string) Frame {
	o, _ := strconv.ParseUint(off, 16, 64)
	z, _ := strconv.ParseUint(size, 16, 64)
	return Frame{Func: fn, Offset: o, Size: z, Module: mod}
}

func title(p pattern, m []string, fr []Frame) string {
	t := p.title
	if p.module {
		for _, f := range fr {
			if f.Module != "" {
				return t + strings.TrimSpace(m[1]) + " in " + f.Func
			}
		}
	}
	switch {
	case p.title == "UBSAN: ":
		return t + m[1] + " in " + m[2]
	case (strings.HasSuffix(t, ": ") || t == "") && len(m) > 1:
		t += strings.TrimSpace(m[1])
	case p.kind == KindWarning || (p.kind == KindBug && len(m) > 1 && strings.HasPrefix(p.title, "kernel BUG")):
		if len(m) > 1 {
			t += " in " + m[1]
		}
		return t
	}
	if fn := culprit(fr); fn != "" && !strings.Contains(t, " in ") {
		t += " in " + fn
	}
	return t
}

// culprit is the function the report blames: the first frame that is not
// crash-reporting machinery.
func culprit(fr []Frame) string {
	for _, f := range fr {
		if !ignoreFns[f.Func] {
			return f.Func
		}
	}
	return ""
}
