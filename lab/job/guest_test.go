package job

import (
	"strings"
	"testing"
)

const guestJob = `name: g
targets: [x86_64, armv7-lpae@trixie]
guest:
  packages: [e2fsprogs, fio]
  modules: [loop, zram]
stress:
  - run: "true"
`

func TestGuestField(t *testing.T) {
	j, err := Parse("g.yaml", []byte(guestJob), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(j.Guest.Packages, ",") != "e2fsprogs,fio" || strings.Join(j.Guest.Modules, ",") != "loop,zram" || j.Guest.Empty() {
		t.Fatalf("guest = %+v", j.Guest)
	}
	if j.Cells()[1].ID != "armv7-lpae@trixie" {
		t.Errorf("a kernel line is part of the cell ID: %s", j.Cells()[1].ID)
	}
	err = j.GuestError("guest.packages", `no package "fio" for armhf in trixie`)
	if err.Error() != `g.yaml:4: guest.packages: no package "fio" for armhf in trixie` {
		t.Errorf("GuestError = %v", err)
	}
	if err := j.GuestError("guest.modules", "x"); !strings.HasPrefix(err.Error(), "g.yaml:5: guest.modules") {
		t.Errorf("GuestError = %v", err)
	}
}

func TestGuestFieldErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{strings.Replace(guestJob, "fio]", "Bad Name]", 1), `g.yaml:4: guest.packages: "Bad Name" is not a Debian package name`},
		{strings.Replace(guestJob, "zram]", "zr/am]", 1), `g.yaml:5: guest.modules: "zr/am" is not a module name`},
		{strings.Replace(guestJob, "  modules:", "  module:", 1), "g.yaml:5: field module not found"},
	} {
		_, err := Parse("g.yaml", []byte(c.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
	j, err := Parse("g.yaml", []byte("name: n\ntargets: [x86_64]\nstress: [{run: 'true'}]\n"), nil)
	if err != nil || !j.Guest.Empty() {
		t.Errorf("no guest field: %+v %v", j, err)
	}
}

func TestGuestCmdline(t *testing.T) {
	src := strings.Replace(guestJob, "  modules: [loop, zram]\n", "  modules: [loop, zram]\n  cmdline:\n    - kfence.sample_interval=10\n    - slub_debug=FZPU\n", 1)
	j, err := Parse("g.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(j.Guest.Cmdline, " ") != "kfence.sample_interval=10 slub_debug=FZPU" {
		t.Errorf("cmdline %q", j.Guest.Cmdline)
	}
	// A problem found later (images.CheckCmdline) is placed at the item's line.
	if err := j.GuestItemError("guest.cmdline", 1, "bad"); err.Error() != "g.yaml:8: guest.cmdline: bad" {
		t.Errorf("GuestItemError = %v", err)
	}
	_, err = Parse("g.yaml", []byte(strings.Replace(src, "slub_debug=FZPU", `"slub_debug=FZ; reboot"`, 1)), nil)
	if err == nil || err.Error() != `g.yaml:8: guest.cmdline: "slub_debug=FZ; reboot" is not a kernel parameter (name=value)` {
		t.Errorf("shell in a parameter: %v", err)
	}
}

func TestOwnKernels(t *testing.T) {
	src := "name: o\ntargets: [armv7-lpae+own, x86_64]\nown_kernels:\n  armv7-lpae: ../linux/out-arm\nstress: [{run: 'true'}]\n"
	j, err := Parse("o.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if j.OwnKernels["armv7-lpae"] != "../linux/out-arm" {
		t.Errorf("own_kernels %v", j.OwnKernels)
	}
	if err := j.OwnKernelError("armv7-lpae", "no Module.symvers"); err.Error() != "o.yaml:4: own_kernels.armv7-lpae: no Module.symvers" {
		t.Errorf("OwnKernelError = %v", err)
	}
	_, err = Parse("o.yaml", []byte(strings.Replace(src, "armv7-lpae+own, ", "", 1)), nil)
	if err == nil || err.Error() != "o.yaml:4: own_kernels.armv7-lpae: no target armv7-lpae+own in targets uses it" {
		t.Errorf("unused: %v", err)
	}
}
