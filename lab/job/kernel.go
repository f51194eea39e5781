package job

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// OwnKernelError places a problem with own_kernels.TARGET found later (the directory
// is no kernel build) at its line.
func (j *Job) OwnKernelError(target, msg string) error {
	line := j.ownLines[target]
	if line == 0 {
		line = 1
	}
	return &Error{File: j.File, Line: line, Field: "own_kernels." + target, Msg: msg}
}

// fragmentLineRe is what a Kconfig fragment holds besides comments and blank lines.
var fragmentLineRe = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$`)

// checkKernels checks own_kernels and kernel_fragments: each used by a target of the
// right kind, each fragment a readable file of Kconfig lines (the first bad one named).
func (j *Job) checkKernels(root *yaml.Node) error {
	bad := func(field, msg string, keys ...string) error {
		return &Error{File: j.File, Line: lineOf(root, keys...), Field: field, Msg: msg}
	}
	j.ownLines = map[string]int{}
	for target, dir := range j.OwnKernels {
		j.ownLines[target] = lineOf(root, "own_kernels", target)
		used := false
		for _, t := range j.Targets {
			used = used || t == target+"+own"
		}
		switch {
		case dir == "":
			return bad("own_kernels."+target, "no directory", "own_kernels", target)
		case !used:
			return bad("own_kernels."+target, fmt.Sprintf("no target %s+own in targets uses it", target), "own_kernels", target)
		}
	}
	if len(j.KernelFragments) == 0 {
		return nil
	}
	built := false
	for _, t := range j.Targets {
		built = built || (strings.Contains(t, "+") && !strings.HasSuffix(t, "+own"))
	}
	if !built {
		return bad("kernel_fragments", "no built line (TARGET+FRAGMENT, e.g. x86_64@trixie+debug) in targets: stock kernels take no config fragments", "kernel_fragments")
	}
	seen := map[string]bool{}
	for i, f := range j.KernelFragments {
		keys := []string{"kernel_fragments", fmt.Sprint(i)}
		where := fmt.Sprintf("kernel_fragments[%d]", i)
		base := f[strings.LastIndex(f, "/")+1:]
		switch {
		case f == "":
			return bad(where, "no file", keys...)
		case seen[base]:
			return bad(where, fmt.Sprintf("a second fragment named %s: give fragments distinct file names", base), keys...)
		}
		seen[base] = true
		data, err := os.ReadFile(j.Path(f))
		if err != nil {
			return bad(where, err.Error(), keys...)
		}
		if msg := checkFragment(data); msg != "" {
			return bad(where, f+": "+msg, keys...)
		}
	}
	return nil
}

// checkFragment says what in a Kconfig fragment is not a config line, or "".
func checkFragment(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	n, configs := 0, 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		switch {
		case fragmentLineRe.MatchString(l):
			configs++
		case l == "" || strings.HasPrefix(l, "#"):
		default:
			return fmt.Sprintf("line %d: %q is not CONFIG_NAME=value or \"# CONFIG_NAME is not set\"", n, l)
		}
	}
	if configs == 0 {
		return "no CONFIG_ line"
	}
	return ""
}

// Fragments reads the job's kernel fragments, in order (checked at load).
func (j *Job) Fragments() ([]Fragment, error) {
	var out []Fragment
	for _, f := range j.KernelFragments {
		data, err := os.ReadFile(j.Path(f))
		if err != nil {
			return nil, fmt.Errorf("%s: kernel_fragments: %w", j.File, err)
		}
		out = append(out, Fragment{Name: f[strings.LastIndex(f, "/")+1:], Data: data})
	}
	return out, nil
}

// Fragment is one of the job's kernel config fragments.
type Fragment struct {
	Name string
	Data []byte
}
