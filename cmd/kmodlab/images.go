package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/spf13/cobra"
)

func builder() *images.Builder {
	dir := flagCache
	if dir == "" {
		dir = images.DefaultCacheDir()
	}
	return &images.Builder{CacheDir: dir}
}

// targetsOrAll resolves target names; none means every built-in target.
func targetsOrAll(names []string) ([]*images.Target, error) {
	if len(names) == 0 {
		return images.Targets()
	}
	var out []*images.Target
	for _, n := range names {
		t, err := images.Lookup(n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func imagesCmd() *cobra.Command {
	return group("images", "Build and inspect guest images", imagesBuildCmd(), imagesPathCmd(), imagesListCmd())
}

func imagesBuildCmd() *cobra.Command {
	var refresh bool
	var add images.Additions
	build := &cobra.Command{
		Use:   "build [TARGET[@LINE]...] [--package P] [--module M]",
		Short: "Fetch the pinned Debian packages and build guest images (cached by recipe hash; additions by content)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := targetsOrAll(args)
			if err != nil {
				return err
			}
			b := builder()
			b.Refresh = refresh
			for _, t := range ts {
				start := time.Now()
				img, err := b.BuildWith(cmd.Context(), t, add)
				if err != nil {
					return err
				}
				hdr, err := b.Headers(cmd.Context(), t)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%-11s %s  (%.1fs)\n            headers %s\n", t.Name, img.Dir, time.Since(start).Seconds(), hdr)
			}
			return nil
		},
	}
	build.Flags().BoolVar(&refresh, "refresh", false, "update the private apt lists first")
	build.Flags().StringSliceVar(&add.Packages, "package", nil, "also build the overlay with this Debian package (repeatable)")
	build.Flags().StringSliceVar(&add.Modules, "module", nil, "also build the overlay with this in-tree module (repeatable)")
	return build
}

func imagesPathCmd() *cobra.Command {
	var headers bool
	path := &cobra.Command{
		Use:   "path TARGET",
		Short: "Print the image directory (or with --headers the kernel build tree) of a target",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := images.Lookup(args[0])
			if err != nil {
				return err
			}
			b := builder()
			if headers {
				d, err := b.Headers(cmd.Context(), t)
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, d)
				return nil
			}
			img, err := b.Build(cmd.Context(), t)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, img.Dir)
			return nil
		},
	}
	path.Flags().BoolVar(&headers, "headers", false, "the kernel headers tree for module builds")
	return path
}

func imagesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the built-in targets, their kernel lines (TARGET@LINE) and the built kernels in the cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := images.Targets()
			if err != nil {
				return err
			}
			for _, t := range ts {
				fmt.Fprintf(stdout, "%-11s %-24s %s\n", t.Name, t.Kernel.Release, t.Description)
				for _, l := range t.LineNames()[1:] {
					lt, _ := t.WithLine(l)
					rel := lt.Kernel.Release
					if rel == "" {
						rel = "newest " + lt.Kernel.Resolve + " (at build)"
					}
					fmt.Fprintf(stdout, "  @%-8s %-24s %s kernel\n", l, rel, lt.Suite)
				}
			}
			fmt.Printf("\nkernels built from Debian's sources (TARGET[@LINE]+FRAGMENT...): fragments %s\n",
				strings.Join(images.FragmentNames(), ", "))
			bk, err := builder().BuiltKernels()
			if err != nil {
				return err
			}
			if len(bk) == 0 {
				fmt.Println("  none in the cache yet")
			}
			for _, k := range bk {
				fmt.Printf("  %-28s %-24s config %s\n", k.Target, k.Release, k.Config)
			}
			return nil
		},
	}
}

func writeKnownHosts(dir, addr string, line []byte) (string, error) {
	file := filepath.Join(dir, "known_hosts-"+strings.ReplaceAll(addr, ":", "_"))
	host, port, _ := strings.Cut(addr, ":")
	return file, os.WriteFile(file, []byte(fmt.Sprintf("[%s]:%s %s", host, port, line)), 0o600)
}
