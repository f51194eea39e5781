package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/qemu"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	return group("bench", "Benchmarks: boot (ours vs the naive recipe), a whole job by phase, and the trace oracle",
		benchBootCmd(), benchJobCmd(), benchTraceCmd())
}

func benchBootCmd() *cobra.Command {
	var (
		n          int
		accel      string
		baseline   bool
		noSnapshot bool
	)
	boot := &cobra.Command{
		Use:   "boot [TARGET...]",
		Short: "QEMU start to first SSH command answered, median of N machines per target",
		Long: `Boots N machines per target the way the lab does (restoring the image's saved machine
state; the first boot of an image saves it) and prints the median time from starting QEMU
to the first SSH command answered.

--baseline also boots the naive recipe in the same run: Debian's compressed kernel as
packaged, a gzip initramfs, no saved state. It prints ours, the baseline and their ratio.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := targetsOrAll(args)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			b := builder()
			// Only warnings (a failed restore) between the table's rows, unless -v.
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if flagVerbose {
				log = slog.Default()
			}
			head := fmt.Sprintf("%-16s %-5s %7s %-12s", "target", "accel", "ours", "how")
			if baseline {
				head += fmt.Sprintf(" %8s %6s", "baseline", "ratio")
			}
			fmt.Fprintln(stdout, head+"  runs (s)")
			for _, t := range ts {
				img, err := b.Build(ctx, t)
				if err != nil {
					return err
				}
				cfg := qemu.Config{Image: img, Accel: accel, NoSnapshot: noSnapshot, Log: log}
				how := "cold"
				if qemu.SnapshotsEnabled(cfg) {
					how = "restore"
					// The first machine of an image saves its state: not what later
					// machines cost, so it is not counted.
					g, err := qemu.Boot(ctx, cfg, b.KeyDir(), 4*time.Minute)
					if err != nil {
						return err
					}
					if !g.Restored {
						fmt.Fprintf(stderr, "kmodlab: %s: booted cold and saved its machine state in %.2fs (not counted)\n", t.Name, g.BootTime.Seconds())
					}
					g.Close()
				}
				ours, mode, restored, err := bootTimes(ctx, cfg, b.KeyDir(), n)
				if err != nil {
					return err
				}
				if how == "restore" && restored < n {
					how = fmt.Sprintf("restore %d/%d", restored, n)
				}
				line := fmt.Sprintf("%-16s %-5s %6.2fs %-12s", t.Name, mode, median(ours), how)
				runs := "ours " + strings.Join(fmtSecs(ours), " ")
				if baseline {
					k, i, err := b.NaiveBoot(ctx, img)
					if err != nil {
						return err
					}
					naive := *img
					naive.Kernel, naive.BootStub, naive.Initrd = k, "", i // as packaged: no stub, no loader
					base, _, _, err := bootTimes(ctx, qemu.Config{Image: &naive, Accel: accel, NoSnapshot: true, Log: log}, b.KeyDir(), n)
					if err != nil {
						return err
					}
					line += fmt.Sprintf(" %7.2fs %6.2f", median(base), median(ours)/median(base))
					runs += " | baseline " + strings.Join(fmtSecs(base), " ")
				}
				fmt.Fprintf(stdout, "%s  %s\n", line, runs)
			}
			return nil
		},
	}
	boot.Flags().IntVarP(&n, "count", "n", 3, "machines per target (and per recipe)")
	boot.Flags().StringVar(&accel, "accel", "auto", "kvm, tcg or auto")
	boot.Flags().BoolVar(&baseline, "baseline", false, "also boot the naive recipe (packaged vmlinuz, gzip initramfs, no saved state) and print the ratio")
	boot.Flags().BoolVar(&noSnapshot, "no-snapshot", false, "boot cold instead of restoring the saved machine state (also: "+qemu.EnvNoSnapshot+"=1)")
	return boot
}

// bootTimes boots n machines one after another and returns their boot-to-SSH times.
func bootTimes(ctx context.Context, cfg qemu.Config, keyDir string, n int) (times []float64, accel string, restored int, err error) {
	for i := 0; i < n; i++ {
		g, err := qemu.Boot(ctx, cfg, keyDir, 4*time.Minute)
		if err != nil {
			return nil, "", 0, err
		}
		times = append(times, g.BootTime.Seconds())
		accel = g.Accel
		if g.Restored {
			restored++
		}
		g.Close()
	}
	return times, accel, restored, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func fmtSecs(t []float64) []string {
	var s []string
	for _, v := range t {
		s = append(s, fmt.Sprintf("%.2f", v))
	}
	return s
}

// benchPhases are the cells' Timings keys, in pipeline order.
var benchPhases = []string{"machine", "setup", "stress", "collect", "teardown"}

func benchJobCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "job JOB [run flags]",
		Short: "Run a job and print its wall time, the per-phase split and transactions verified per second of stress",
		Long: `Runs 'kmodlab run JOB [run flags]' (in a child process, into a temporary --out unless one
is given), then reads its results.json and prints, per cell and in total: the time to get a
machine (boot or restore), setup, stress, collect and teardown, the verdict, and the
transactions the trace oracle verified per second of stress.`,
		Example:            `  kmodlab bench job jobs/highmem-coherency.yaml --set stress=6s -j 2`,
		Args:               cobra.MinimumNArgs(1),
		DisableFlagParsing: true, // everything after JOB belongs to 'kmodlab run'
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "-h" || args[0] == "--help" {
				return cmd.Help()
			}
			out := ""
			for i, a := range args {
				if a == "--out" && i+1 < len(args) {
					out = args[i+1]
				} else if strings.HasPrefix(a, "--out=") {
					out = strings.TrimPrefix(a, "--out=")
				}
			}
			runArgs := append([]string{"run"}, args...)
			if out == "" {
				dir, err := os.MkdirTemp("", "kmodlab-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				out = dir
				runArgs = append(runArgs, "--out", dir)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c := exec.CommandContext(ctx, self, runArgs...)
			c.Stdout, c.Stderr = stderr, stderr
			// Ctrl-C: the run shuts its machines down and writes its reports; give it time.
			c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
			c.WaitDelay = 30 * time.Second
			wall, ee, runErr := timeChild(c)
			if ee == nil && runErr != nil {
				return runErr
			}
			data, err := os.ReadFile(filepath.Join(out, "results.json"))
			if err != nil {
				return fmt.Errorf("the run wrote no results (%v): %w", runErr, err)
			}
			var rep report.Run
			if err := json.Unmarshal(data, &rep); err != nil {
				return err
			}
			printJobBench(&rep, wall)
			if ee != nil {
				return &exitError{ee.ExitCode(), fmt.Errorf("kmodlab run exited %d", ee.ExitCode())}
			}
			return nil
		},
	}
}

// timeChild runs c and says how long it took. A child that ran and exited non-zero is
// a result, given as ee (err is then ee too); err alone means it could not run.
func timeChild(c *exec.Cmd) (secs float64, ee *exec.ExitError, err error) {
	t0 := time.Now()
	err = c.Run()
	secs = time.Since(t0).Seconds()
	errors.As(err, &ee)
	return secs, ee, err
}

func printJobBench(rep *report.Run, wall float64) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cell\tmachine\tsetup\tstress\tcollect\tteardown\tverdict\ttx verified\ttx/s stress\t")
	sum := map[string]float64{}
	var tx int
	for _, c := range rep.Cells {
		row := c.ID
		for _, p := range benchPhases {
			row += fmt.Sprintf("\t%.1f", c.Timings[p])
			sum[p] += c.Timings[p]
		}
		n := 0
		if c.Trace != nil {
			n = c.Trace.Transactions
		}
		tx += n
		rate := "-"
		if s := c.Timings["stress"]; s > 0 {
			rate = fmt.Sprintf("%.0f", float64(n)/s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t\n", row, c.Verdict, n, rate)
	}
	row := "sum"
	for _, p := range benchPhases {
		row += fmt.Sprintf("\t%.1f", sum[p])
	}
	rate := "-"
	if sum["stress"] > 0 {
		rate = fmt.Sprintf("%.0f", float64(tx)/sum["stress"])
	}
	fmt.Fprintf(tw, "%s\t\t%d\t%s\t\n", row, tx, rate)
	tw.Flush()
	fmt.Fprintf(stdout, "wall %.1fs for %d cells (the run's own clock: %.1fs)\n", wall, len(rep.Cells), rep.Seconds)
}

func benchTraceCmd() *cobra.Command {
	var sizeMB int
	c := &cobra.Command{
		Use:   "trace [KERN.LOG...]",
		Short: "'kmodlab trace analyze' on large logs: throughput and peak memory (RSS)",
		Long: `Runs 'kmodlab trace analyze' and 'kmodlab trace analyze --json' in a child process on each
log and prints the wall time, the throughput and the child's peak resident memory. Without
a log it writes two synthetic ones of --size MB: one where every read transaction diverges
(the worst case for memory) and one where none does, so the two rows show whether memory
depends on the number of divergences.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			logs := args
			if len(logs) == 0 {
				dir, err := os.MkdirTemp("", "kmodlab-bench-trace-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				for _, diverge := range []bool{true, false} {
					name := filepath.Join(dir, map[bool]string{true: "all-diverged.log", false: "none-diverged.log"}[diverge])
					if err := writeTraceLog(name, int64(sizeMB)<<20, diverge); err != nil {
						return err
					}
					logs = append(logs, name)
				}
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "log\tMB\toutput\tseconds\tMB/s\tpeak RSS MB\tRSS / input\texit\t")
			for _, l := range logs {
				st, err := os.Stat(l)
				if err != nil {
					return err
				}
				mb := float64(st.Size()) / (1 << 20)
				for _, js := range []bool{false, true} {
					a := []string{"trace", "analyze", l}
					out := "text"
					if js {
						a, out = append(a, "--json"), "--json"
					}
					c := exec.CommandContext(cmd.Context(), self, a...)
					secs, ee, err := timeChild(c)
					if ee == nil && err != nil {
						return err
					}
					rss := 0.0
					if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
						rss = float64(ru.Maxrss) / 1024 // kB
					}
					fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.2f\t%.0f\t%.0f\t%.2f\t%d\t\n", filepath.Base(l), mb, out, secs, mb/secs, rss, rss/mb, c.ProcessState.ExitCode())
				}
			}
			return tw.Flush()
		},
	}
	c.Flags().IntVar(&sizeMB, "size", 50, "size of each synthetic log in MB")
	return c
}

// writeTraceLog writes a kernel log of about size bytes of read transactions, as
// userblk traces them in atomic mode; with diverge, the submitter's read2 and read3
// disagree with the daemon's read1 in every one.
func writeTraceLog(name string, size int64, diverge bool) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	for x := uint64(1); n < size; x++ {
		crc2 := uint64(0x11111111)
		if diverge {
			crc2 = 0x22222222
		}
		for i, op := range []string{"read0", "read1", "read2", "readx", "read3"} {
			ev := trace.Event{Disk: "userblk0", Op: op, Xid: x, Pos: (x % 4096) << 12, Len: 4096, Addr: "ffeee000",
				TID: 400, CPU: 0, Mode: "atomic", Dev: "0badcafe"}
			switch op {
			case "read0":
				ev.CRC = 0xaaaaaaaa
			case "read1", "readx":
				ev.CRC, ev.TID, ev.CPU = 0x11111111, 401, 1
			default:
				ev.CRC = crc2
			}
			k, _ := fmt.Fprintf(w, "[%5d.%06d] %s\n", x/1000, (x%1000)*1000+uint64(i), trace.FormatLine(ev))
			n += int64(k)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
