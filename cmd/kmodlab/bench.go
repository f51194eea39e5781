package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/kmodlab/kmodlab/lab/qemu"
	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "Benchmarks"}
	var n int
	var accel string
	boot := &cobra.Command{
		Use:   "boot [TARGET...]",
		Short: "QEMU start to first SSH command answered, median of N boots per target",
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := targetsOrAll(args)
			if err != nil {
				return err
			}
			b := builder()
			for _, t := range ts {
				img, err := b.Build(cmd.Context(), t)
				if err != nil {
					return err
				}
				var times []float64
				mode := ""
				for i := 0; i < n; i++ {
					g, err := qemu.Boot(cmd.Context(), qemu.Config{Image: img, Accel: accel}, b.KeyDir(), 4*time.Minute)
					if err != nil {
						return err
					}
					times = append(times, g.BootTime.Seconds())
					mode = g.Accel
					g.Close()
				}
				sort.Float64s(times)
				fmt.Printf("%-11s %-3s median %.2fs  (runs: %v)\n", t.Name, mode, times[len(times)/2], fmtSecs(times))
			}
			return nil
		},
	}
	boot.Flags().IntVarP(&n, "count", "n", 3, "boots per target")
	boot.Flags().StringVar(&accel, "accel", "auto", "kvm, tcg or auto")
	c.AddCommand(boot)
	return c
}

func fmtSecs(t []float64) []string {
	var s []string
	for _, v := range t {
		s = append(s, fmt.Sprintf("%.2f", v))
	}
	return s
}
