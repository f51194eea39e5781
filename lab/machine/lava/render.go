package lava

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"gopkg.in/yaml.v3"
)

// Artefact is how the cell's files reach the device: Inline (base64 of a gzipped
// tar, unpacked at /) or URL (the device fetches the same archive).
type Artefact struct {
	Inline string
	URL    string
	Size   int64 // the archive's bytes
}

// Images are the kmodlab image files a qemu device deploys (kernel: kmodlab): URLs the
// dispatcher can download (file:// for a local lava-run).
type Images struct {
	Kernel, Initrd string
	Arch           string // the qemu device's arch: arm, amd64, i386
	Memory         int    // MiB
	SMP            int
	Append         string // kernel command line
}

// Job is a rendered LAVA job definition, with what rendered it.
type Job struct {
	YAML []byte
	Name string
}

// definition is a LAVA job definition's top level, in the order LAVA's docs show it.
type definition struct {
	DeviceType string           `yaml:"device_type"`
	JobName    string           `yaml:"job_name"`
	Tags       []string         `yaml:"tags,omitempty"`
	Priority   any              `yaml:"priority"`
	Visibility string           `yaml:"visibility"`
	Timeouts   map[string]any   `yaml:"timeouts"`
	Context    map[string]any   `yaml:"context,omitempty"`
	Actions    []map[string]any `yaml:"actions"`
}

// RenderOptions are what a rendering needs besides the lab and the cell.
type RenderOptions struct {
	Art    Artefact
	Images *Images // kernel: kmodlab only
	Job    string  // the kmodlab job's name, for the LAVA job's name
}

var caseName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Render turns one cell into one LAVA job: the device type's deploy and boot, then one
// test action whose inline definition unpacks the cell's files and runs its steps in
// order through the step driver (driver.sh semantics, below), one lava-test-case per
// step with its exit status. The steps' output, the kernel log's records and the
// fetched files are printed between markers, so they come back in the job's log.
func Render(l *Lab, c runner.CellJob, o RenderOptions) (*Job, error) {
	name := fmt.Sprintf("kmodlab %s %s", o.Job, c.Cell)
	var total time.Duration
	for _, s := range c.Steps {
		total += s.Timeout
	}
	testMin := int(total.Minutes()) + 10
	jobMin := int(l.JobTimeout.D(30 * time.Minute).Minutes())
	if jobMin < testMin+15 {
		jobMin = testMin + 15
	}
	d := definition{
		DeviceType: l.DeviceType,
		JobName:    name,
		Tags:       l.Tags,
		Priority:   priority(l.Priority),
		Visibility: l.Visibility,
		Timeouts: map[string]any{
			"job":        map[string]any{"minutes": jobMin},
			"action":     map[string]any{"minutes": 10},
			"connection": map[string]any{"minutes": 2},
		},
	}
	deploy, boot, ctx, err := bootActions(l, o.Images)
	if err != nil {
		return nil, err
	}
	d.Context = ctx
	steps, err := testSteps(c, o.Art, Reused(l))
	if err != nil {
		return nil, err
	}
	test := map[string]any{
		"timeout": map[string]any{"minutes": testMin},
		"definitions": []any{map[string]any{
			"from": "inline",
			"name": "kmodlab",
			"path": "inline/kmodlab.yaml",
			"repository": map[string]any{
				"metadata": map[string]any{
					"format":      "Lava-Test Test Definition 1.0",
					"name":        "kmodlab",
					"description": "kmodlab cell " + c.Cell + ": setup, stress, teardown; kernel log and reports between KMODLAB markers",
				},
				"run": map[string]any{"steps": steps},
			},
		}},
	}
	d.Actions = []map[string]any{{"deploy": deploy}, {"boot": boot}, {"test": test}}
	out, err := yaml.Marshal(&d)
	if err != nil {
		return nil, err
	}
	return &Job{YAML: out, Name: name}, nil
}

func priority(p string) any {
	var v int
	if _, err := fmt.Sscanf(p, "%d", &v); err == nil {
		return v
	}
	return p
}

// bootActions are the deploy and boot actions: kmodlab's image on a qemu device, or
// the lab's own, as runners.yaml gives them.
func bootActions(l *Lab, im *Images) (deploy, boot, context map[string]any, err error) {
	if l.Boot.Kernel == "lab" {
		return copyMap(l.Boot.Deploy), copyMap(l.Boot.Boot), nil, nil
	}
	if im == nil || im.Kernel == "" || im.Initrd == "" {
		return nil, nil, nil, fmt.Errorf("lava %s: kernel: kmodlab needs the image's kernel and initramfs", l.Name)
	}
	deploy = map[string]any{
		"to":      "tmpfs",
		"timeout": map[string]any{"minutes": 5},
		"images": map[string]any{
			"kernel": map[string]any{"url": im.Kernel, "image_arg": "-kernel {kernel} -append \"" + im.Append + "\""},
			"initrd": map[string]any{"url": im.Initrd, "image_arg": "-initrd {initrd}"},
		},
	}
	boot = map[string]any{
		"method":  "qemu",
		"media":   "tmpfs",
		"timeout": map[string]any{"minutes": 5},
		"prompts": []any{"kmodlab login:", "/ # ", "# "},
	}
	context = map[string]any{"arch": im.Arch}
	if im.Memory > 0 {
		context["memory"] = im.Memory
	}
	if im.SMP > 0 { // LAVA's qemu template has no CPU count variable: its extra options
		context["extra_options"] = []any{fmt.Sprintf("-smp %d", im.SMP)}
	}
	return deploy, boot, context, nil
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// driver is the step driver, defined in the test shell before the steps run. LAVA's
// run.sh runs under set -e and set -x: the first step turns tracing off (an inline
// artefact would otherwise be echoed into the log) and every command here that may
// fail is guarded.
//
// kl_step INDEX PHASE NAME TIMEOUT BACKGROUND CMD runs one step: setup, stress and
// teardown steps are skipped after a step timed out (the machine is wedged), stress
// steps after a setup step failed; lab and collect steps always run. It prints
// KMODLAB-STEP-BEGIN, each output line as "KMODLAB-OUT INDEX: …", KMODLAB-STEP-END
// INDEX STATUS TIMEDOUT, and records a lava-test-case PHASE-NAME with the status.
// A background step's session leader records itself in KL_TMP/kmodlab-bg.pids (boot
// id, pid, start time), so a later job on a device that is not rebooted can stop what
// it left (cleanup.go). KL_TMP is the device's scratch directory, /tmp unless the
// environment says otherwise (the tests).
// kl_file PATH prints a file between KMODLAB-FILE markers, in base64: LAVA's log of
// the device's output is not byte-exact (it drops carriage returns, escape characters
// and empty lines, and escapes double quotes).
const driver = `: "${KL_TMP:=/tmp}"
kl_step() {
	kl_i=$1; kl_p=$2; kl_n=$3; kl_t=$4; kl_bg=$5; kl_c=$6
	case "$kl_p" in setup|stress|teardown)
		if [ -n "$KL_STOP" ] || { [ "$kl_p" = stress ] && [ -n "$KL_SETUP_FAILED" ]; }; then
			echo "KMODLAB-STEP-SKIP $kl_i $kl_p $kl_n"; return 0
		fi;;
	esac
	echo "KMODLAB-STEP-BEGIN $kl_i $kl_p $kl_n"
	kl_s=$(date +%s); kl_rc=0; kl_to=0
	if [ "$kl_bg" = 1 ]; then
		setsid sh -c 'echo "$(cat /proc/sys/kernel/random/boot_id) $$ $(cut -d" " -f22 /proc/$$/stat)" >> "$2/kmodlab-bg.pids"; exec sh -c "$1"' kl-bg "$kl_c" "$KL_TMP" < /dev/null > /dev/null 2>&1 &
		: > "$KL_TMP/kmodlab-out"
	else
		timeout "$kl_t" sh -c "$kl_c" < /dev/null > "$KL_TMP/kmodlab-out" 2>&1 || kl_rc=$?
	fi
	if [ "$kl_rc" -ge 124 ] && [ $(( $(date +%s) - kl_s )) -ge "$kl_t" ]; then kl_to=1; KL_STOP=1; fi
	sed "s/^/KMODLAB-OUT $kl_i: /" "$KL_TMP/kmodlab-out" || true
	echo "KMODLAB-STEP-END $kl_i $kl_rc $kl_to"
	if [ "$kl_rc" = 0 ]; then kl_r=pass; else kl_r=fail; [ "$kl_p" = setup ] && KL_SETUP_FAILED=1; fi
	lava-test-case "$kl_p-$(echo "$kl_n" | tr -c 'A-Za-z0-9_.\n-' _)" --result $kl_r --measurement $kl_rc --units exit-status || true
}
kl_file() {
	if [ -f "$1" ]; then
		echo "KMODLAB-FILE-BEGIN $1"
		base64 "$1" | sed 's/^/KMODLAB-FILE: /' || true
		echo "KMODLAB-FILE-END $1"
	else
		echo "KMODLAB-FILE-MISSING $1"
	fi
}`

// testSteps are the run steps of the inline test definition; on a device that is not
// rebooted between jobs (reused), the cleanup of an earlier cell's leftovers first.
func testSteps(c runner.CellJob, art Artefact, reused bool) ([]any, error) {
	steps := []any{"set +x", driver}
	if reused {
		steps = append(steps, cleanupSteps(c)...)
	}
	steps = append(steps, "echo KMODLAB-CELL "+shQuote(c.Cell))
	switch {
	case art.Inline != "":
		steps = append(steps, "if echo '"+art.Inline+"' | base64 -d | tar -xzf - -C /; then lava-test-case kmodlab-files --result pass; else lava-test-case kmodlab-files --result fail; exit 1; fi")
	case art.URL != "":
		get := "{ wget -q -O /tmp/kmodlab-files.tgz " + shQuote(art.URL) + " || curl -fsSL -o /tmp/kmodlab-files.tgz " + shQuote(art.URL) + "; }"
		steps = append(steps, "if "+get+" && tar -xzf /tmp/kmodlab-files.tgz -C /; then lava-test-case kmodlab-files --result pass; else lava-test-case kmodlab-files --result fail; exit 1; fi")
	case len(c.Files) > 0:
		return nil, fmt.Errorf("cell %s: files but no artefact", c.Cell)
	}
	for i, s := range c.Steps {
		switch s.Phase {
		case "lab", "setup", "stress", "teardown", "collect":
		default:
			return nil, fmt.Errorf("cell %s: step %q: phase %q", c.Cell, s.Name, s.Phase)
		}
		sec := int(s.Timeout.Seconds())
		if sec < 1 {
			sec = 90
		}
		bg := 0
		if s.Background {
			bg = 1
		}
		steps = append(steps, fmt.Sprintf("kl_step %d %s %s %d %d %s", i, s.Phase, caseName.ReplaceAllString(s.Name, "_"), sec, bg, shQuote(s.Cmd)))
	}
	for _, f := range c.Fetch {
		steps = append(steps, "kl_file "+shQuote(f))
	}
	steps = append(steps, "echo KMODLAB-CELL-END")
	return steps, nil
}

// shQuote is one word for sh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
