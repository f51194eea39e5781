//go:build e2e

package e2e

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/job"
)

var canaryCounts = regexp.MustCompile(`stale (\d+)/\d+ to a consumer via kmap_local_page, (\d+)/\d+ via kmap; kernel thread (\d+)/\d+`)

// TestKernelLines runs jobs/kernels.yaml on the newer lines: the stock trixie and sid
// kernels hide the report's bug from a consumer under TCG (ARM_PAN), so their canary is
// negative with the reason and no cell there may be clean; the +detect line, built from
// trixie's sources without ARM_PAN, boots, builds and loads the module, has a positive
// consumer canary, and reproduces the bug in atomic mode while kmap stays clean.
func TestKernelLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute) // a cold kernel build is in it
	defer cancel()
	f, j := loadJob(t, "jobs/kernels.yaml")
	shortStress(j)
	// A built line's first build takes most of an hour on 2 cores: it runs here when the
	// cache has it (kmodlab images build armv7-lpae@trixie+detect) or when asked to build.
	builtReady := map[string]bool{}
	for _, name := range j.Targets {
		tg, err := images.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := f.Builder.KernelBuilt(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		builtReady[name] = ok || os.Getenv("KMODLAB_E2E_KERNEL_BUILD") == "1"
	}
	var cells []job.Cell
	skipped := 0
	for _, c := range j.Cells() {
		switch {
		case c.Target == "armv7-lpae" || c.Target == "arm64": // bookworm's line: TestDefaultJob
		case strings.HasPrefix(c.Target, "arm64@") && (c.Target != "arm64@trixie" || c.Params["map_mode"] != "atomic"):
			// The control's newer lines: trixie's atomic cell alone guards the headers
			// fix its modules need (gcc 14's ftrace patch sites); sid's is in the job.
		case strings.Contains(c.Target, "+") && !builtReady[c.Target]:
			skipped++
		case !strings.Contains(c.Target, "+") && strings.HasPrefix(c.Target, "armv7-lpae@") && c.Params["map_mode"] != "atomic":
			// A stock newer line's state comes from its canary, which runs once per
			// target: its atomic cell shows it, and a second cell there costs a
			// stress run to show the same CANNOT-DETECT (kmodlab run covers both).
		default:
			cells = append(cells, c)
		}
	}
	if skipped > 0 {
		t.Logf("%d cells of built lines left out: their kernels are not in the cache (kmodlab images build them, or KMODLAB_E2E_KERNEL_BUILD=1)", skipped)
	}
	rep := runCells(t, ctx, f, j, cells, 3, t.TempDir(), map[string]string{"stress": "20s"})
	built := 0
	for _, c := range rep.Cells {
		t.Logf("%s: %s: canary %s", c.ID, c.Verdict, c.Canary)
		if !c.Met {
			t.Errorf("%s: %s, expected %s\n%s\n%s", c.ID, c.Verdict, c.Expect, strings.Join(c.Reasons, "\n"), c.Error)
		}
		m := canaryCounts.FindStringSubmatch(c.Canary)
		if m == nil {
			t.Errorf("%s: no canary counts in %q", c.ID, c.Canary)
			continue
		}
		consumer, _ := strconv.Atoi(m[1])
		kmapStale, _ := strconv.Atoi(m[2])
		kthread, _ := strconv.Atoi(m[3])
		if kmapStale != 0 {
			t.Errorf("%s: a global kmap() mapping went stale %d times", c.ID, kmapStale)
		}
		if tg, _ := images.Lookup(c.Target); tg != nil && tg.Expect.HighTotalMinKB == 0 {
			if c.Verdict != "clean" || c.CanaryState != "no-highmem" {
				t.Errorf("%s: %s, canary %s (%s): want clean on a kernel without HIGHMEM", c.ID, c.Verdict, c.CanaryState, c.Canary)
			}
			continue
		}
		if strings.Contains(c.Target, "+detect") { // +detect, +detect+lean
			built++
			if c.CanaryState != "positive" || consumer == 0 {
				t.Errorf("%s: canary %s (%s), want positive for a consumer", c.ID, c.CanaryState, c.Canary)
			}
			if !strings.HasPrefix(c.Kernel, "6.12.") {
				t.Errorf("%s: kernel %q, want the built 6.12", c.ID, c.Kernel)
			}
			continue
		}
		if c.Verdict == "clean" {
			t.Errorf("%s: clean on a stock line whose consumer canary cannot see the bug", c.ID)
		}
		if c.CanaryState != "negative" || consumer != 0 || kthread == 0 ||
			!strings.Contains(c.Canary, "kernel threads only") || !strings.Contains(c.Canary, "CPU_TTBR0_PAN") {
			t.Errorf("%s: canary %s (%s), want negative: kernel threads only, under CPU_TTBR0_PAN", c.ID, c.CanaryState, c.Canary)
		}
	}
	if built == 0 && skipped == 0 {
		t.Errorf("no cell ran on a built line")
	}
}
