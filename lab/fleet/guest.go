package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// CheckGuest takes the job's guest: field as the additions every machine gets and
// checks, before anything boots, that each QEMU target's suite has the packages and
// its kernel package the modules; the error points at the job file's line.
func (f *Fleet) CheckGuest(ctx context.Context, j *job.Job) error {
	f.Guest = images.Additions{Packages: j.Guest.Packages, Modules: j.Guest.Modules}
	f.Cmdline = j.Guest.Cmdline
	seen := map[string]bool{}
	for _, name := range j.Targets {
		k, ok := f.owner(name).(interface {
			checkGuest(ctx context.Context, j *job.Job, name string, seen map[string]bool) error
		})
		if !ok {
			continue // a kind that checks the additions when it attaches (boards)
		}
		if err := k.checkGuest(ctx, j, name, seen); err != nil {
			return err
		}
	}
	return nil
}

// checkGuest checks one QEMU target's suite and kernel against the job's additions
// (each base target once: seen).
func (k qemuKind) checkGuest(ctx context.Context, j *job.Job, name string, seen map[string]bool) error {
	f := k.f
	t, err := images.Lookup(name)
	if err != nil || seen[t.Name] {
		return err
	}
	seen[t.Name] = true
	if i, err := images.CheckCmdline(f.Cmdline, t.QEMU.Cmdline(t.QEMU.SMP)); err != nil {
		return j.GuestItemError("guest.cmdline", i, err.Error())
	}
	if f.Guest.Empty() {
		return nil
	}
	if err := f.Builder.CheckAdditions(ctx, t, f.Guest); err != nil {
		var ae *images.AdditionError
		if errors.As(err, &ae) {
			return j.GuestError(ae.Field, ae.Msg)
		}
		return err
	}
	return nil
}

// CheckOwnKernels hands the job's own_kernels to the image builder, each checked
// to be a kernel build its target can boot (the error points at the job's line), and
// its kernel_fragments, which the builder merges into every built line.
func (f *Fleet) CheckOwnKernels(j *job.Job) error {
	frags, err := j.Fragments()
	if err != nil {
		return err
	}
	f.Builder.JobFragments = nil
	for _, fr := range frags {
		f.Builder.JobFragments = append(f.Builder.JobFragments, images.JobFragment{Name: fr.Name, Data: fr.Data})
	}
	for target, dir := range j.OwnKernels {
		t, err := images.Lookup(target)
		if err != nil {
			return j.OwnKernelError(target, err.Error())
		}
		if t.Name != t.Base {
			return j.OwnKernelError(target, "name the target without a line or fragments: the build is the kernel")
		}
		abs := j.Path(dir)
		if err := images.CheckOwnKernel(t, abs); err != nil {
			return j.OwnKernelError(target, err.Error())
		}
		if f.Builder.OwnKernels == nil {
			f.Builder.OwnKernels = map[string]string{}
		}
		f.Builder.OwnKernels[target] = abs
	}
	for _, name := range j.Targets {
		if t, err := images.Lookup(name); err == nil && strings.HasSuffix(name, "+"+images.OwnSuffix) && f.Builder.OwnKernels[t.Base] == "" {
			return j.OwnKernelError(t.Base, fmt.Sprintf("target %s needs own_kernels.%s: the build directory", name, t.Base))
		}
	}
	return nil
}

// checkBoard runs the additions check on an attached board: what it lacks is an
// infrastructure problem of that board, listed.
func (f *Fleet) checkBoard(ctx context.Context, r runner.Runner) error {
	if len(f.Cmdline) > 0 {
		out, err := runner.Output(ctx, r, "cat /proc/cmdline")
		if err != nil {
			return fmt.Errorf("%s: read /proc/cmdline: %w", r.Info().Name, err)
		}
		have := map[string]bool{}
		for _, p := range strings.Fields(out) {
			have[p] = true
		}
		var missing []string
		for _, p := range f.Cmdline {
			if !have[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s does not boot with the job's guest.cmdline: %s (a board's command line is its own: add them there)", r.Info().Name, strings.Join(missing, " "))
		}
	}
	if f.Guest.Empty() {
		return nil
	}
	var out bytes.Buffer
	err := r.Run(ctx, images.CheckAdditionsCommand(f.Guest), &out, &out)
	missing, perr := images.ParseMissing(out.String())
	if perr != nil {
		return fmt.Errorf("%s: guest additions check: %v (%v)", r.Info().Name, perr, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks the job's guest additions: %s", r.Info().Name, strings.Join(missing, ", "))
	}
	return nil
}
