package lava

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testCell() runner.CellJob {
	return runner.CellJob{Target: "rpi4", Cell: "rpi4/atomic",
		Files: []runner.CellFile{{Local: "testdata/files/userblk.ko", Remote: "/root/userblk.ko", Mode: 0o644}},
		Steps: []runner.CellStep{
			{Phase: "lab", Name: "kmsg-start", Cmd: "/root/kmodlab-kmsg last", Timeout: 30 * time.Second},
			{Phase: "setup", Name: "insmod", Cmd: "insmod /root/userblk.ko map_mode=atomic", Timeout: 90 * time.Second},
			{Phase: "setup", Name: "userblkd", Cmd: "/root/userblkd -size 64M > /root/userblkd.log 2>&1", Timeout: 90 * time.Second, Background: true},
			{Phase: "stress", Name: "odirect", Cmd: "rm -f '/root/s.json'; /root/blkstress -json /root/s.json 'it''s'", Timeout: 4 * time.Minute},
			{Phase: "collect", Name: "kmsg", Cmd: "/root/kmodlab-kmsg read -from 1", Timeout: 90 * time.Second},
		},
		Fetch: []string{"/root/s.json"},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(file, got, 0o644)
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the rendering (go test -update rewrites it):\n%s", file, got)
	}
}

func labs(t *testing.T, text string) []*Lab {
	t.Helper()
	l, err := Parse("runners.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

const rpi4 = `lava:
  - name: rpi4
    url: https://lava.example.org/
    user: alice
    token_env: LAVA_TOKEN
    device_type: bcm2711-rpi-4-b
    tags: [highmem]
    priority: high
    max_jobs: 4
    boot:
      kernel: lab
      arch: arm
      prebuilt: /srv/ko
      deploy: {to: tftp, kernel: {url: "https://x/zImage", type: zimage}, dtb: {url: "https://x/rpi4.dtb"}}
      boot: {method: u-boot, commands: nfs, prompts: ["# "]}
`

func TestRenderLabKernel(t *testing.T) {
	l := labs(t, rpi4)[0]
	j, err := Render(l, testCell(), RenderOptions{Art: Artefact{Inline: "QUJD"}, Job: "highmem-coherency"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "rpi4-atomic.yaml", j.YAML)
	// The definition is YAML LAVA reads, its test steps in order.
	var d map[string]any
	if err := yaml.Unmarshal(j.YAML, &d); err != nil {
		t.Fatal(err)
	}
	s := string(j.YAML)
	for _, want := range []string{"kl_step 1 setup insmod 90 0 ", "kl_step 2 setup userblkd 90 1 ", "kl_step 3 stress odirect 240 0 ", `'\''it'\'''\''s'\''`, "kl_file '/root/s.json'", "echo 'QUJD' | base64 -d | tar -xzf - -C /"} {
		if !strings.Contains(s, want) {
			t.Errorf("rendering lacks %q", want)
		}
	}
	if strings.Index(s, "set +x") > strings.Index(s, "QUJD") {
		t.Error("tracing is turned off after the inline artefact: LAVA's set -x would echo it into the log")
	}
}

func TestRenderKmodlabImage(t *testing.T) {
	l := labs(t, `lava:
  - {name: q, url: "http://lava", user: u, token_env: T, device_type: qemu, boot: {kernel: kmodlab, image: armv7-lpae}}
`)[0]
	c := testCell()
	_, err := Render(l, c, RenderOptions{Art: Artefact{URL: "https://files/x.tgz"}})
	if err == nil || !strings.Contains(err.Error(), "kernel and initramfs") {
		t.Fatalf("no images: %v", err)
	}
	j, err := Render(l, c, RenderOptions{Art: Artefact{URL: "https://files/x.tgz"}, Job: "j",
		Images: &Images{Kernel: "file:///i/Image", Initrd: "file:///i/initramfs.cpio", Arch: "arm", Memory: 3072, SMP: 4, Append: "console=ttyAMA0"}})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "qemu-atomic.yaml", j.YAML)
}

func TestRenderBadPhase(t *testing.T) {
	l := labs(t, rpi4)[0]
	c := testCell()
	c.Steps[1].Phase = "later"
	if _, err := Render(l, c, RenderOptions{Art: Artefact{Inline: "x"}}); err == nil || !strings.Contains(err.Error(), `phase "later"`) {
		t.Fatalf("bad phase: %v", err)
	}
	c = testCell()
	if _, err := Render(l, c, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "no artefact") {
		t.Fatalf("files without an artefact: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"lava: {}\n", "runners.yaml:1: lava: want a list"},
		{"lava:\n  - {url: http://x, device_type: qemu}\n", "runners.yaml:2: lava[0]: name: missing"},
		{"lava:\n  - name: a\n    device_type: qemu\n", "runners.yaml:2: lava a: url: missing"},
		{"lava:\n  - name: a\n    url: http://x\n    device_type: ssh\n    user: u\n    token_env: 0123abcdef\n", "runners.yaml:6: lava a: token_env: \"0123abcdef\": not an environment variable name"},
		{"lava:\n  - name: a\n    device_type: qemu\n    url: http://u:p@x\n", "lava a: url: holds credentials"},
		{"lava:\n  - name: a\n    url: http://x\n    user: u\n    token_env: T\n    device_type: qemu\n    priority: urgent\n    boot: {kernel: kmodlab, image: x86_64}\n", "runners.yaml:7: lava a: priority: \"urgent\""},
		{"lava:\n  - name: a\n    url: http://x\n    user: u\n    token_env: T\n    device_type: rpi\n    boot: {kernel: kmodlab, image: x86_64}\n", "lava a: boot.kernel: kmodlab's own image boots on a qemu device"},
		{"lava:\n  - name: a\n    url: http://x\n    user: u\n    token_env: T\n    device_type: rpi\n    boot:\n      kernel: lab\n      image: x86_64\n", "runners.yaml:8: lava a: boot.deploy: missing"},
		{"lava:\n  - name: a\n    url: http://x\n    user: u\n    token_env: T\n    device_type: ssh\n    max_jobs: 1000\n    boot: {kernel: lab, image: x86_64}\n", "runners.yaml:7: lava a: max_jobs: 1000"},
		{"lava:\n  - name: a\n    color: red\n", "runners.yaml:3: lava[0]: field color not found in Lab"},
		{"lava:\n  - {name: a, url: http://x, device_type: qemu, queue_timeout: soon}\n", "runners.yaml:2: lava[0]: \"soon\" is not a duration (like 30s or 2m)"},
		{"lava:\n  - name: a\n    url: http://x\n    device_type: qemu\n    job_timeout: -1m\n", "runners.yaml:5: lava a: job_timeout: -1m0s: a timeout cannot be negative"},
		{"lava:\n  - name: a\n    url: http://x\n    user: u\n    token_env: T\n    device_type: ssh\n    boot: {kernel: lab, image: x86_64}\n  - name: a\n    url: http://x\n    user: u\n    token_env: T\n    device_type: ssh\n    boot: {kernel: lab, image: x86_64}\n", "runners.yaml:8: lava a: name: used twice"},
	} {
		_, err := Parse("runners.yaml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.text, err, tc.want)
		}
	}
	// ssh devices get LAVA's ssh deploy and boot by default.
	l := labs(t, "lava:\n  - {name: s, dispatcher: /d.yaml, device_type: ssh, boot: {kernel: lab, image: x86_64}}\n")[0]
	if l.Boot.Deploy["to"] != "ssh" || l.Boot.Boot["method"] != "ssh" || l.MaxJobs != 1 || l.Priority != "medium" {
		t.Errorf("ssh defaults: %+v", l)
	}
	if l, err := Parse("r", []byte("boards: []\n")); err != nil || l != nil {
		t.Errorf("no lava: %v %v", l, err)
	}
}

// An ssh device is not rebooted between jobs: its jobs begin with the cleanup.
func TestRenderSSH(t *testing.T) {
	l := labs(t, "lava:\n  - {name: s, url: http://lava, user: u, token_env: T, device_type: ssh, boot: {kernel: lab, image: x86_64}}\n")[0]
	j, err := Render(l, testCell(), RenderOptions{Art: Artefact{Inline: "QUJD"}, Job: "highmem-coherency"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ssh-atomic.yaml", j.YAML)
}

// The golden renderings are valid LAVA job definitions, checked by the validator
// lava-dispatcher ships (lava_common.schemas, strict), where it is installed.
func TestGoldenSchema(t *testing.T) {
	const check = `import sys, yaml
from lava_common.schemas import validate
for f in sys.argv[1:]:
    try:
        validate(yaml.safe_load(open(f)), strict=True)
    except Exception as e:
        print("%s: %s" % (f, e)); sys.exit(1)`
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil || exec.Command(py, "-c", "import lava_common.schemas").Run() != nil {
		t.Skip("no lava_common (apt-get install lava-dispatcher)")
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	if out, err := exec.Command(py, append([]string{"-c", check}, files...)...).CombinedOutput(); err != nil {
		t.Errorf("LAVA's job schema: %v\n%s", err, out)
	}
}
