package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/kmodlab/kmodlab/lab/observe/console"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/spf13/cobra"
)

func traceCmd() *cobra.Command {
	return group("trace", "The CRC-trace oracle and the crash detector on any kernel log", traceAnalyzeCmd())
}

func traceAnalyzeCmd() *cobra.Command {
	var asJSON bool
	var limit int
	analyze := &cobra.Command{
		Use:   "analyze [KERN.LOG]",
		Short: "Check a kernel log's userblk trace lines (or the original report's table); - or nothing reads stdin",
		Long:  "Exit 0 when no transaction diverged, 1 when one did, 2 when the input holds no trace event or cannot be read.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = os.Stdin
			name := "stdin"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in, name = f, args[0]
			}
			an := trace.NewAnalyzer()
			var sc console.Scanner
			err := trace.ReadLines(in, func(l string) { an.Line(l); sc.Line(l) }, an.LongLine)
			res := an.Finish()
			crashes := sc.Reports()
			if err != nil {
				return &exitError{report.ExitInfra, fmt.Errorf("%s: %w (after %d lines)", name, err, res.Lines)}
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				enc.Encode(map[string]any{"trace": res, "crashes": crashes})
			} else {
				fmt.Fprintf(stdout, "%s: %d lines, %d trace events, %d transactions (%d reads, %d writes checked), %d diverged\n",
					name, res.Lines, res.Events, res.Transactions, res.Reads, res.Writes, res.Diverged())
				if n := res.Unparsed + res.Merged + res.Long + res.IntegrityTotal + res.UserFaults; n > 0 {
					fmt.Fprintf(stdout, "  doubts: %d unparsed lines, %d lines holding two records, %d lines too long, %d transactions failing integrity checks, %d user-side faults\n",
						res.Unparsed, res.Merged, res.Long, res.IntegrityTotal, res.UserFaults)
				}
				for i, d := range res.Divergences {
					if i == limit {
						fmt.Fprintf(stdout, "… %d more\n", res.Diverged()-limit)
						break
					}
					fmt.Fprintf(stdout, "\ntransaction %08x %s%s: %s: %s\n%s", d.Xid, d.Disk, devSuffix(d.Dev), d.Kind, d.Detail, trace.Table(d.Events))
				}
				for _, p := range res.Problems {
					fmt.Fprintf(stdout, "\nintegrity: transaction %08x %s%s: %s: %s\n", p.Xid, p.Disk, devSuffix(p.Dev), p.Kind, p.Detail)
				}
				for _, r := range crashes {
					fmt.Fprintf(stdout, "\n%s (line %d)\n", r.Title, r.Line)
				}
			}
			if res.Events == 0 {
				return &exitError{report.ExitInfra, fmt.Errorf("%s: no trace events in %d lines", name, res.Lines)}
			}
			if res.Diverged() > 0 {
				return &exitError{1, fmt.Errorf("%d transactions diverged", res.Diverged())}
			}
			return nil
		},
	}
	analyze.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	analyze.Flags().IntVar(&limit, "limit", 5, "divergences to print in full")
	return analyze
}

func devSuffix(dev string) string {
	if dev == "" {
		return ""
	}
	return " dev=" + dev
}
