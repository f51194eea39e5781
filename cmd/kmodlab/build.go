package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/spf13/cobra"
)

func buildCmd() *cobra.Command {
	return group("build", "Build a kernel module for a target's exact kernel", buildKmodCmd(), sweepCmd())
}

func buildKmodCmd() *cobra.Command {
	var target, dir string
	var strict bool
	kmod := &cobra.Command{
		Use:   "kmod [--target T] [--dir kmod]",
		Short: "Build a module directory against the target's headers (cross-compiled for ARM), W=1",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := targetsOrAll(splitNonEmpty(target))
			if err != nil {
				return err
			}
			b := builder()
			for _, t := range ts {
				hdr, err := b.Headers(cmd.Context(), t)
				if err != nil {
					return err
				}
				abs, _ := filepath.Abs(dir)
				kos, _, err := build.Module(cmd.Context(), build.Kbuild{Headers: hdr, Arch: t.ModuleBuild.Arch,
					CrossCompile: t.ModuleBuild.CrossCompile, CrossPackage: t.ModuleBuild.CrossPackage, Release: t.Kernel.Release},
					abs, b.CacheDir, strict)
				if err != nil {
					return err
				}
				for _, k := range kos {
					info, _ := images.ModInfo(k)
					fmt.Fprintf(stdout, "%-11s %s  (vermagic %s)\n", t.Name, k, info["vermagic"])
				}
			}
			return nil
		},
	}
	kmod.Flags().StringVar(&target, "target", "", "target(s), comma separated (default: all)")
	kmod.Flags().StringVar(&dir, "dir", "kmod", "module source directory")
	kmod.Flags().BoolVar(&strict, "strict", true, "fail when W=1 prints a warning")
	return kmod
}

// splitNonEmpty splits a comma-separated flag value, dropping empty items.
func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
