package lava

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// ImageFiles gives a kmodlab target's kernel and initramfs on the host, and its QEMU
// settings, for a qemu device that deploys them (kernel: kmodlab).
type ImageFiles func(ctx context.Context, target string) (*Images, error)

// Provider is the LAVA runner kind: each lab entry is a target name. It implements
// fleet.Provider and runner.Batch.
type Provider struct {
	Labs     []*Lab
	Base     build.Targets // the QEMU kind: what a lab entry's image: target is, how modules are built for its kernel
	Images   ImageFiles
	Progress io.Writer // progress lines while a job waits and runs
	JobName  string    // the kmodlab job's name, for the LAVA job's name
	Poll     time.Duration

	sems map[string]chan struct{}
}

// NewProvider makes the kind for labs.
func NewProvider(labs []*Lab, base build.Targets, im ImageFiles, progress io.Writer) *Provider {
	p := &Provider{Labs: labs, Base: base, Images: im, Progress: progress, Poll: 5 * time.Second, sems: map[string]chan struct{}{}}
	for _, l := range labs {
		p.sems[l.Name] = make(chan struct{}, l.MaxJobs)
	}
	return p
}

// Lab is the entry named name, nil when there is none.
func (p *Provider) Lab(name string) *Lab {
	for _, l := range p.Labs {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Kind implements fleet.Provider.
func (p *Provider) Kind() runner.Kind { return Kind }

// Owns implements fleet.Provider.
func (p *Provider) Owns(name string) bool { return p.Lab(name) != nil }

// Names implements fleet.Provider.
func (p *Provider) Names() []string {
	var n []string
	for _, l := range p.Labs {
		n = append(n, l.Name)
	}
	return n
}

// InFlight is how many of the entry's cells may be in the lab at once (max_jobs).
func (p *Provider) InFlight(name string) int {
	if l := p.Lab(name); l != nil {
		return l.MaxJobs
	}
	return 0
}

// Describe implements fleet.Provider: an image: entry is that target's kernel.
func (p *Provider) Describe(name string) (runner.Info, error) {
	l := p.Lab(name)
	if l == nil {
		return runner.Info{}, fmt.Errorf("no lava entry %q", name)
	}
	info := runner.Info{Name: l.Name, Kind: Kind, Target: l.DeviceType, GOARCH: l.Boot.Arch, GOARM: l.Boot.GOARM, Build: "prebuilt", Prebuilt: l.Boot.Prebuilt}
	if l.Boot.Image != "" {
		if p.Base == nil {
			return runner.Info{}, fmt.Errorf("%s: lava %s: image %q: no QEMU targets to take it from", l.Where(), l.Name, l.Boot.Image)
		}
		bi, err := p.Base.Describe(l.Boot.Image)
		if err != nil {
			return runner.Info{}, fmt.Errorf("%s: lava %s: boot.image: %w", l.Where(), l.Name, err)
		}
		info.Target, info.GOARCH, info.GOARM = bi.Target, bi.GOARCH, bi.GOARM
		info.KernelRelease, info.ImageHash, info.Build, info.Prebuilt = bi.KernelRelease, bi.ImageHash, bi.Build, ""
	}
	return info, nil
}

// Strategy implements fleet.Provider: built on the host for the image's kernel, or
// the entry's prebuilt modules.
func (p *Provider) Strategy(ctx context.Context, name, cacheDir string, strict bool) (build.Strategy, error) {
	l := p.Lab(name)
	if l == nil {
		return nil, fmt.Errorf("no lava entry %q", name)
	}
	if l.Boot.Image != "" {
		return p.Base.Strategy(ctx, l.Boot.Image, cacheDir, strict)
	}
	return &build.Prebuilt{Dir: l.Boot.Prebuilt}, nil
}

// Acquire implements fleet.Provider: a lab takes cells only as whole jobs.
func (p *Provider) Acquire(ctx context.Context, name, consoleLog string) (runner.Runner, error) {
	return nil, fleet.ErrBatch
}

// Prepare renders the cell's job: its files packed (inline, or uploaded where the
// device fetches them) and the definition written to the cell's log directory.
func (p *Provider) Prepare(ctx context.Context, l *Lab, c runner.CellJob) (*Job, error) {
	archive, err := Pack(c.Files)
	if err != nil {
		return nil, fmt.Errorf("pack the cell's files: %w", err)
	}
	art := Artefact{Size: int64(len(archive))}
	if int64(len(archive)) <= l.Artefacts.InlineMax || l.Artefacts.URL == "" {
		if int64(len(archive)) > l.Artefacts.InlineMax {
			return nil, fmt.Errorf("lava %s: the cell's files are %d bytes packed, over artefacts.inline_max %d, and no artefacts.url to upload them to", l.Name, len(archive), l.Artefacts.InlineMax)
		}
		art.Inline = Inline(archive)
	} else {
		if art.URL, err = upload(ctx, l, c, archive); err != nil {
			return nil, err
		}
	}
	var im *Images
	if l.Boot.Kernel == "kmodlab" {
		if p.Images == nil {
			return nil, fmt.Errorf("lava %s: no image files for %s", l.Name, l.Boot.Image)
		}
		if im, err = p.Images(ctx, l.Boot.Image); err != nil {
			return nil, fmt.Errorf("lava %s: image %s: %w", l.Name, l.Boot.Image, err)
		}
	}
	j, err := Render(l, c, RenderOptions{Art: art, Images: im, Job: p.JobName})
	if err != nil {
		return nil, err
	}
	if c.LogDir != "" {
		os.MkdirAll(c.LogDir, 0o755)
		os.WriteFile(filepath.Join(c.LogDir, "lava-job.yaml"), j.YAML, 0o644)
	}
	return j, nil
}

// upload puts the archive where the device fetches it, with the entry's command.
func upload(ctx context.Context, l *Lab, c runner.CellJob, archive []byte) (string, error) {
	name := "kmodlab-" + strings.NewReplacer("/", "_", "@", "_", "+", "_").Replace(c.Cell) + fmt.Sprintf("-%d.tgz", time.Now().UnixNano())
	dir, err := os.MkdirTemp("", "kmodlab-lava-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		return "", err
	}
	cmd := strings.NewReplacer("{path}", shQuote(file), "{name}", shQuote(name)).Replace(l.Artefacts.Upload)
	if out, err := hostCommand(ctx, cmd); err != nil {
		return "", fmt.Errorf("lava %s: artefacts.upload %q: %v: %s", l.Name, cmd, err, lastLine(out))
	}
	return strings.ReplaceAll(l.Artefacts.URL, "{name}", name), nil
}

// RunCell implements runner.Batch: render, submit (or dispatch locally), follow,
// fetch, read. Held to the entry's max_jobs.
func (p *Provider) RunCell(ctx context.Context, c runner.CellJob) (*runner.CellLog, error) {
	l := p.Lab(c.Target)
	if l == nil {
		return nil, fmt.Errorf("no lava entry %q", c.Target)
	}
	select {
	case p.sems[l.Name] <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.sems[l.Name] }()
	j, err := p.Prepare(ctx, l, c)
	if err != nil {
		return nil, err
	}
	var res *result
	if l.Dispatcher != "" {
		res, err = p.dispatch(ctx, l, c, j)
	} else {
		res, err = p.submit(ctx, l, c, j)
	}
	if err != nil {
		return nil, err
	}
	os.WriteFile(filepath.Join(c.LogDir, "lava.log"), res.log, 0o644)
	recs := ParseLog(res.log)
	out := Read(recs, c)
	out.Ref = res.ref()
	if err := res.end(recs, out); err != nil {
		return nil, err
	}
	done, failed := readCleanup(recs)
	if failed != "" {
		return nil, fmt.Errorf("%s: the device still holds an earlier job's leftovers: %s", res.ref(), failed)
	}
	if len(done) > 0 {
		out.Notes = append(out.Notes, "an earlier job's leftovers on the device, cleaned up before the cell: "+strings.Join(done, "; "))
	}
	return out, nil
}

func (p *Provider) progress(cell, format string, args ...any) {
	if p.Progress != nil {
		fmt.Fprintf(p.Progress, "[lava] %-22s %s\n", cell, fmt.Sprintf(format, args...))
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
