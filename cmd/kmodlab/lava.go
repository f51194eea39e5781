package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/fleet"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/machine/lava"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"github.com/kmodlab/kmodlab/lab/run"
	"github.com/spf13/cobra"
)

// lavaKind is the LAVA provider of the last newFleet, nil without lava: entries.
var lavaKind *lava.Provider

// addLava registers runners.yaml's lava: entries as a runner kind of the fleet.
func addLava(f *fleet.Fleet, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	labs, err := lava.Parse(file, data)
	if err != nil || len(labs) == 0 {
		return err
	}
	lavaKind = lava.NewProvider(labs, f, imageFiles(f.Builder), stderr)
	f.Kinds = append(f.Kinds, lavaKind)
	return nil
}

// imageFiles gives a qemu device kmodlab's own kernel and initramfs of a target.
func imageFiles(b *images.Builder) lava.ImageFiles {
	return func(ctx context.Context, target string) (*lava.Images, error) {
		t, err := images.Lookup(target)
		if err != nil {
			return nil, err
		}
		img, err := b.Build(ctx, t)
		if err != nil {
			return nil, err
		}
		arch := map[string]string{"arm": "arm", "amd64": "amd64", "386": "i386"}[t.GOARCH]
		return &lava.Images{Kernel: "file://" + filepath.Join(img.Dir, "Image"), Initrd: "file://" + filepath.Join(img.Dir, "initramfs.cpio"),
			Arch: arch, Memory: t.QEMU.MemoryMB, SMP: t.QEMU.SMP, Append: t.QEMU.Append}, nil
	}
}

// lavaRoute sends a job's target to a lava: entry (--lava TARGET=ENTRY): the cells
// keep their IDs and expectations and run as LAVA jobs on the entry's devices.
type lavaRoute struct {
	*fleet.Fleet
	to map[string]string
}

func (r *lavaRoute) name(t string) string {
	if e, ok := r.to[t]; ok {
		return e
	}
	return t
}

func (r *lavaRoute) Describe(t string) (runner.Info, error) { return r.Fleet.Describe(r.name(t)) }
func (r *lavaRoute) Strategy(ctx context.Context, t, cache string, strict bool) (build.Strategy, error) {
	return r.Fleet.Strategy(ctx, r.name(t), cache, strict)
}
func (r *lavaRoute) Acquire(ctx context.Context, t, console string) (runner.Runner, error) {
	return r.Fleet.Acquire(ctx, r.name(t), console)
}
func (r *lavaRoute) Batch(t string) runner.Batch {
	b := r.Fleet.Batch(r.name(t))
	if b == nil {
		return nil
	}
	return routedBatch{b, r.name(t)}
}
func (r *lavaRoute) InFlight(t string) int {
	if lavaKind == nil {
		return 0
	}
	return lavaKind.InFlight(r.name(t))
}

type routedBatch struct {
	runner.Batch
	entry string
}

func (b routedBatch) RunCell(ctx context.Context, c runner.CellJob) (*runner.CellLog, error) {
	c.Target = b.entry
	return b.Batch.RunCell(ctx, c)
}

// parseRoutes reads --lava TARGET=ENTRY flags against the configured entries.
func parseRoutes(items []string) (map[string]string, error) {
	m, err := parseKV(items, "--lava", true)
	if err != nil {
		return nil, err
	}
	for t, e := range m {
		if lavaKind == nil || !lavaKind.Owns(e) {
			return nil, fmt.Errorf("--lava %s=%s: no lava: entry %q in runners.yaml", t, e, e)
		}
	}
	return m, nil
}

// lavaPreflight checks the token of every lava entry the cells use before any cell
// runs: a wrong token is one clear error, not a matrix of INFRA cells.
func lavaPreflight(ctx context.Context, m run.Machines, cells []job.Cell, routes map[string]string) error {
	if lavaKind == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, c := range cells {
		e := c.Target
		if r, ok := routes[e]; ok {
			e = r
		}
		l := lavaKind.Lab(e)
		if l == nil || seen[e] || l.Dispatcher != "" {
			continue
		}
		seen[e] = true
		if h := l.Check(ctx); !h.OK && (h.User == "" || strings.Contains(h.Problem, "token")) {
			return fmt.Errorf("lava %s: %s", e, h.Problem)
		}
	}
	return nil
}

func lavaCmd() *cobra.Command {
	c := group("lava", "LAVA labs: render a cell as a LAVA job", lavaRenderCmd())
	c.PersistentFlags().StringVar(&flagRunners, "runners", "", "runners.yaml (default $XDG_CONFIG_HOME/kmodlab/runners.yaml)")
	return c
}

func lavaRenderCmd() *cobra.Command {
	var (
		cells []string
		entry string
		seed  int64
		sets  []string
	)
	render := &cobra.Command{
		Use:   "render JOB --cell C [--lab ENTRY]",
		Short: "Print the LAVA job definition a cell becomes (to read it, or to submit it yourself)",
		Long: `Render builds what the cell needs and prints the LAVA job it becomes on a lava:
entry of runners.yaml: the entry's deploy and boot, and one test action that unpacks the
cell's files and runs its steps, one lava-test-case per step. --lab names the entry;
without it, the cell's target must be an entry, or exactly one entry has boot.image equal
to the target.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := newFleet("auto", 0)
			if err != nil {
				return err
			}
			if lavaKind == nil {
				return fmt.Errorf("no lava: entries in runners.yaml (give --runners FILE)")
			}
			j, err := job.Load(args[0], f.Known)
			if err != nil {
				return err
			}
			vars, err := parseSets(j, sets)
			if err != nil {
				return err
			}
			sel, err := job.Select(j.Cells(), cells)
			if err != nil {
				return err
			}
			cjs, err := run.CellJobs(cmd.Context(), run.Options{Job: j, Cells: sel, Seed: seed, Machines: f,
				CacheDir: f.Builder.CacheDir, Canary: true, Vars: vars})
			if err != nil {
				return err
			}
			lavaKind.JobName = j.Name
			for _, cj := range cjs {
				l, err := pickLab(cj.Target, entry)
				if err != nil {
					return err
				}
				out, err := lavaKind.Prepare(cmd.Context(), l, cj)
				if err != nil {
					return err
				}
				os.Stdout.Write(out.YAML)
				if len(cjs) > 1 {
					fmt.Fprintln(stdout, "---")
				}
			}
			return nil
		},
	}
	render.Flags().StringSliceVar(&cells, "cell", nil, "the cells to render (globs allowed)")
	render.Flags().StringVar(&entry, "lab", "", "the lava: entry of runners.yaml")
	render.Flags().Int64Var(&seed, "seed", 1, "the stress tools' seed")
	render.Flags().StringArrayVar(&sets, "set", nil, "override one of the job's vars")
	return render
}

func pickLab(target, entry string) (*lava.Lab, error) {
	if entry != "" {
		if l := lavaKind.Lab(entry); l != nil {
			return l, nil
		}
		return nil, fmt.Errorf("--lab %s: no such lava: entry (have %s)", entry, strings.Join(lavaKind.Names(), ", "))
	}
	if l := lavaKind.Lab(target); l != nil {
		return l, nil
	}
	var found []*lava.Lab
	for _, l := range lavaKind.Labs {
		if l.Boot.Image == target {
			found = append(found, l)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return nil, fmt.Errorf("target %s: give --lab ENTRY (%d lava: entries have boot.image %s)", target, len(found), target)
}

// lavaMachines is the fleet, with --lava routes, after the token preflight.
func lavaMachines(ctx context.Context, f *fleet.Fleet, jobName string, items []string, cells []job.Cell) (run.Machines, error) {
	routes, err := parseRoutes(items)
	if err != nil {
		return nil, err
	}
	if err := lavaPreflight(ctx, f, cells, routes); err != nil {
		return nil, err
	}
	if lavaKind == nil {
		return f, nil
	}
	lavaKind.JobName = jobName
	return &lavaRoute{Fleet: f, to: routes}, nil
}

// checkLabs prints the health of the lava: entries (all, or those named) and returns
// how many failed.
func checkLabs(ctx context.Context, names []string) int {
	if lavaKind == nil {
		return 0
	}
	bad := 0
	for _, l := range lavaKind.Labs {
		if len(names) > 0 && !contains(names, l.Name) {
			continue
		}
		h := l.Check(ctx)
		if h.OK {
			fmt.Fprintf(stdout, "%-14s ok    lava %s: token of %s works; %s devices: %d idle, %d busy, %d offline\n", l.Name, l.URL+l.Dispatcher, h.User, l.DeviceType, h.Idle, h.Busy, h.Offline)
			continue
		}
		bad++
		fmt.Fprintf(stdout, "%-14s FAIL  lava %s: %s\n", l.Name, l.URL+l.Dispatcher, h.Problem)
	}
	return bad
}
