// Package console finds kernel crashes in console or kernel-log text: the patterns LAVA
// and syzkaller use, each report with a stable title a person can search for and the
// lines that make it.
package console

import (
	"regexp"
	"strings"
)

// Report is one crash found in a log.
type Report struct {
	Title string `json:"title"` // stable: "BUG: unable to handle page fault in userblk_complete"
	Kind  string `json:"kind"`  // panic, oops, bug, warning, lockup, stall, hung
	Line  int    `json:"line"`  // 1-based line of the first matching line
	Text  string `json:"text"`  // the report's lines
}

type pattern struct {
	kind  string
	re    *regexp.Regexp
	title string // prefix of the title; the function is added when found
	fatal bool
}

// Order matters: the first pattern that matches a line wins.
var patterns = []pattern{
	{"panic", regexp.MustCompile(`Kernel panic - not syncing: ?(.*)`), "kernel panic: ", true},
	{"oops", regexp.MustCompile(`Unable to handle kernel (paging request|NULL pointer dereference)`), "BUG: unable to handle kernel paging request", true},
	{"oops", regexp.MustCompile(`BUG: unable to handle (page fault|kernel paging request|kernel NULL pointer dereference)`), "BUG: unable to handle page fault", true},
	{"bug", regexp.MustCompile(`kernel BUG at ([^ ]+)`), "kernel BUG", true},
	{"bug", regexp.MustCompile(`BUG: (soft lockup|scheduling while atomic|sleeping function called from invalid context|KASAN|KFENCE|spinlock|bad page|Bad page|workqueue lockup)`), "BUG: ", true},
	{"lockup", regexp.MustCompile(`watchdog: BUG: soft lockup`), "BUG: soft lockup", true},
	{"stall", regexp.MustCompile(`rcu: INFO: rcu_\w+ (self-)?detected stall|rcu_\w+ detected stalls? on CPUs`), "INFO: rcu detected stall", true},
	{"hung", regexp.MustCompile(`INFO: task .* blocked for more than \d+ seconds`), "INFO: task hung", true},
	{"oops", regexp.MustCompile(`Internal error: (.*)`), "Internal error", true},
	{"oops", regexp.MustCompile(`Unhandled fault: (.*)`), "Unhandled fault", true},
	{"oops", regexp.MustCompile(`(general protection fault|Oops: \d+|Oops - )`), "Oops", true},
	{"bug", regexp.MustCompile(`\bBUG: (.*)`), "BUG: ", true},
	{"warning", regexp.MustCompile(`WARNING: CPU: \d+ PID: \d+ at ([^ ]+)`), "WARNING", false},
}

var (
	pcRe      = regexp.MustCompile(`(?:PC is at|RIP: [0-9a-f]{4}:|EIP: |pc : |EIP is at )\s*(?:\[<[0-9a-f]+>\]\s*)?([A-Za-z_][\w.]*)\+0x`)
	endRe     = regexp.MustCompile(`---\[ end (trace|Kernel panic)|^\s*$`)
	prefixRe  = regexp.MustCompile(`^(?:<\d+>)?(?:\[\s*\d+\.\d+\]\s*)?(?:\[\s*[CT]\d+\]\s*)?`)
	callRe    = regexp.MustCompile(`^\s*(?:\[<[0-9a-f]+>\]\s*)?\(?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+`)
	ignoreFns = map[string]bool{"dump_stack": true, "dump_stack_lvl": true, "show_stack": true, "panic": true,
		"__warn": true, "warn_slowpath_fmt": true, "die": true, "do_exit": true, "make_task_dead": true,
		"__do_kernel_fault": true, "do_page_fault": true, "do_DataAbort": true, "__dabt_svc": true,
		"page_fault_oops": true, "exc_page_fault": true, "asm_exc_page_fault": true, "handle_page_fault": true}
)

// Find returns every crash report in text, in order. Warnings are reported too (Kind
// "warning"); Fatal tells whether any report should fail a run.
func Find(text string) []Report {
	lines := strings.Split(text, "\n")
	var out []Report
	for i := 0; i < len(lines); i++ {
		l := prefixRe.ReplaceAllString(strings.TrimRight(lines[i], "\r"), "")
		for _, p := range patterns {
			m := p.re.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			// Take the report's lines up to its end marker (bounded).
			end := i + 1
			for ; end < len(lines) && end < i+80; end++ {
				if endRe.MatchString(prefixRe.ReplaceAllString(lines[end], "")) && end > i+1 {
					end++
					break
				}
			}
			body := lines[i:min(end, len(lines))]
			out = append(out, Report{Title: title(p, m, body), Kind: p.kind, Line: i + 1, Text: strings.Join(body, "\n")})
			// Lines inside this report are not new reports (an oops prints "Internal
			// error" after "Unable to handle").
			i = end - 1
			break
		}
	}
	return out
}

// Fatal reports whether any report is a crash rather than a warning.
func Fatal(reps []Report) bool {
	for _, r := range reps {
		if r.Kind != "warning" {
			return true
		}
	}
	return false
}

// First returns the first fatal report, or the first report, or nil.
func First(reps []Report) *Report {
	for i := range reps {
		if reps[i].Kind != "warning" {
			return &reps[i]
		}
	}
	if len(reps) > 0 {
		return &reps[0]
	}
	return nil
}

func title(p pattern, m []string, body []string) string {
	t := p.title
	switch {
	case strings.HasSuffix(t, ": ") && len(m) > 1:
		t += strings.TrimSpace(m[1])
	case p.kind == "warning" || (p.kind == "bug" && len(m) > 1 && strings.HasPrefix(p.title, "kernel BUG")):
		if len(m) > 1 {
			t += " in " + m[1]
		}
		return t
	}
	if fn := culprit(body); fn != "" && !strings.Contains(t, " in ") {
		t += " in " + fn
	}
	return t
}

// culprit is the function the report blames: the PC line, else the first call-trace
// entry that is not crash-reporting machinery.
func culprit(body []string) string {
	for _, l := range body {
		if m := pcRe.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	for _, l := range body {
		if m := callRe.FindStringSubmatch(prefixRe.ReplaceAllString(l, "")); m != nil && !ignoreFns[m[1]] {
			return m[1]
		}
	}
	return ""
}
