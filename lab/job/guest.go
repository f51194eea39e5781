package job

import (
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Guest is what a job adds to its machines: Debian packages of each target's
// architecture and suite, and in-tree modules of each target's own kernel package. QEMU
// targets get them installed (an overlay initramfs); boards are checked for them (a
// missing one makes the cell INFRA with the list).
type Guest struct {
	Packages []string `yaml:"packages"`
	Modules  []string `yaml:"modules"`
	// Cmdline are kernel parameters added to every QEMU machine's command line (debug
	// switches of stock kernels: kfence.sample_interval=10, slub_debug=FZPU; which ones
	// are allowed is images.CheckCmdline's); a board must already boot with them.
	Cmdline []string `yaml:"cmdline"`

	lines map[string]int // guest.packages / guest.modules -> line, for errors found later
}

// Empty reports whether the job adds nothing.
func (g Guest) Empty() bool { return len(g.Packages) == 0 && len(g.Modules) == 0 }

var (
	debPackageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	moduleNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	cmdlineRe    = regexp.MustCompile(`^[a-z0-9_.-]+(=[A-Za-z0-9_.,:-]*)?$`)
)

// checkGuest checks the names' syntax; whether they exist is known only with the
// target's apt root and kernel package (GuestError places that error at its line).
func (j *Job) checkGuest(root *yaml.Node) error {
	j.Guest.lines = map[string]int{}
	for _, f := range []string{"packages", "modules"} {
		j.Guest.lines["guest."+f] = lineOf(root, "guest", f)
	}
	for i, p := range j.Guest.Packages {
		if !debPackageRe.MatchString(p) {
			return &Error{File: j.File, Line: lineOf(root, "guest", "packages", fmt.Sprint(i)), Field: "guest.packages",
				Msg: fmt.Sprintf("%q is not a Debian package name", p)}
		}
	}
	for i, c := range j.Guest.Cmdline {
		j.Guest.lines[fmt.Sprintf("guest.cmdline.%d", i)] = lineOf(root, "guest", "cmdline", fmt.Sprint(i))
		if !cmdlineRe.MatchString(c) {
			return &Error{File: j.File, Line: lineOf(root, "guest", "cmdline", fmt.Sprint(i)), Field: "guest.cmdline",
				Msg: fmt.Sprintf("%q is not a kernel parameter (name=value)", c)}
		}
	}
	for i, m := range j.Guest.Modules {
		if !moduleNameRe.MatchString(m) {
			return &Error{File: j.File, Line: lineOf(root, "guest", "modules", fmt.Sprint(i)), Field: "guest.modules",
				Msg: fmt.Sprintf("%q is not a module name", m)}
		}
	}
	return nil
}

// GuestError places a problem with the guest field found later (a package the
// target's suite does not have: images.AdditionError's Field and Msg) at its line:
// "jobs/x.yaml:7: guest.packages: no package "x" for armhf in trixie".
func (j *Job) GuestError(field, msg string) error {
	return j.GuestItemError(field, -1, msg)
}

// GuestItemError is GuestError at item i of the field's list (-1: the field).
func (j *Job) GuestItemError(field string, i int, msg string) error {
	line := j.Guest.lines[fmt.Sprintf("%s.%d", field, i)]
	if line == 0 {
		line = j.Guest.lines[field]
	}
	if line == 0 {
		line = 1
	}
	return &Error{File: j.File, Line: line, Field: field, Msg: msg}
}
