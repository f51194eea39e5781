package images

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// cmdlineParams are the kernel parameters a job may add to a stock line's command line:
// debug switches every Debian kernel has, with the values each takes. Anything else
// (console=, isolcpus=, rodata=) is the recipe's, and a job that changes it would
// change what the lab measures.
var cmdlineParams = map[string]*regexp.Regexp{
	"kfence.sample_interval": regexp.MustCompile(`^\d+$`),
	"slub_debug":             regexp.MustCompile(`^[FZPUTA-]*(,[\w.-]+)*$`),
	"page_poison":            regexp.MustCompile(`^[01]$`),
	"init_on_free":           regexp.MustCompile(`^[01]$`),
	"init_on_alloc":          regexp.MustCompile(`^[01]$`),
	"page_owner":             regexp.MustCompile(`^on$`),
	"panic_on_warn":          regexp.MustCompile(`^[01]$`),
	"softlockup_panic":       regexp.MustCompile(`^[01]$`),
	"hung_task_panic":        regexp.MustCompile(`^[01]$`),
	"kasan.fault":            regexp.MustCompile(`^(report|panic)$`),
	"kasan.stacktrace":       regexp.MustCompile(`^(on|off)$`),
}

// CmdlineParams lists the parameters CheckCmdline accepts.
func CmdlineParams() []string {
	var n []string
	for k := range cmdlineParams {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// CheckCmdline checks a job's kernel command-line additions: each a known parameter
// with a value it takes, none given twice, none that the recipe's own command line
// (recipeAppend) already sets. It returns the index of the first bad one and why.
func CheckCmdline(params []string, recipeAppend string) (int, error) {
	seen := map[string]bool{}
	recipe := map[string]bool{}
	for _, f := range strings.Fields(recipeAppend) {
		k, _, _ := strings.Cut(f, "=")
		recipe[k] = true
	}
	for i, p := range params {
		k, v, hasValue := strings.Cut(p, "=")
		re, ok := cmdlineParams[k]
		switch {
		case !ok:
			return i, fmt.Errorf("%q: not a debug parameter the lab lets a job set (known: %s)", p, strings.Join(CmdlineParams(), ", "))
		case !hasValue || !re.MatchString(v):
			return i, fmt.Errorf("%q: %s takes a value matching %s", p, k, re)
		case seen[k]:
			return i, fmt.Errorf("%q: %s is given twice", p, k)
		case recipe[k]:
			return i, fmt.Errorf("%q: the target's own command line sets %s", p, k)
		}
		seen[k] = true
	}
	return -1, nil
}
