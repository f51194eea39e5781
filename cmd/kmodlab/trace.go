package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/kmodlab/kmodlab/lab/console"
	"github.com/kmodlab/kmodlab/lab/trace"
	"github.com/spf13/cobra"
)

func traceCmd() *cobra.Command {
	c := &cobra.Command{Use: "trace", Short: "The CRC-trace oracle and the crash detector on any kernel log"}
	var asJSON bool
	var limit int
	analyze := &cobra.Command{
		Use:   "analyze [KERN.LOG]",
		Short: "Check a kernel log's userblk trace lines (or the original report's table); - or nothing reads stdin",
		Long:  "Exit 0 when no transaction diverged, 1 when one did.",
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
			data, err := io.ReadAll(in)
			if err != nil {
				return err
			}
			res := trace.AnalyzeString(string(data))
			crashes := console.Find(string(data))
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				enc.Encode(map[string]any{"trace": res, "crashes": crashes})
			} else {
				fmt.Printf("%s: %d lines, %d trace events (%d unparsed), %d transactions (%d reads, %d writes checked), %d diverged\n",
					name, res.Lines, res.Events, res.Unparsed, res.Transactions, res.Reads, res.Writes, res.Diverged())
				for i, d := range res.Divergences {
					if i == limit {
						fmt.Printf("… %d more\n", len(res.Divergences)-limit)
						break
					}
					fmt.Printf("\ntransaction %08x %s: %s: %s\n%s", d.Xid, d.Disk, d.Kind, d.Detail, trace.Table(d.Events))
				}
				for _, r := range crashes {
					fmt.Printf("\n%s (line %d)\n", r.Title, r.Line)
				}
			}
			if res.Diverged() > 0 {
				return &exitError{1, fmt.Errorf("%d transactions diverged", res.Diverged())}
			}
			return nil
		},
	}
	analyze.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	analyze.Flags().IntVar(&limit, "limit", 5, "divergences to print in full")
	c.AddCommand(analyze)
	return c
}
