package lava

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"gopkg.in/yaml.v3"
)

// runSteps are the rendered job's test steps as one script, as LAVA's run.sh runs
// them (set -e).
func runScript(t *testing.T, j *Job) string {
	t.Helper()
	var d struct {
		Actions []map[string]struct {
			Definitions []struct {
				Repository struct {
					Run struct{ Steps []string }
				}
			}
		}
	}
	if err := yaml.Unmarshal(j.YAML, &d); err != nil {
		t.Fatal(err)
	}
	test := d.Actions[len(d.Actions)-1]["test"]
	return "set -e\n" + strings.Join(test.Definitions[0].Repository.Run.Steps, "\n") + "\n"
}

// running is the pids of live (not zombie) processes whose executable is exe.
func running(exe string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if e, err := os.Readlink(d + "/exe"); err != nil || strings.TrimSuffix(e, " (deleted)") != exe {
			continue
		}
		st, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			continue
		}
		n, _ := strconv.Atoi(filepath.Base(d))
		pids = append(pids, n)
	}
	return pids
}

// A cell's job on an ssh device is cancelled while its stress step runs: its
// background daemon and its stress process stay on the device, which LAVA does not
// reboot. The next cell's job (the same rendering) must stop both before its own
// steps, say so, and run normally. Run for real by sh, with a copy of sleep(1) as the
// deployed daemon and stress binary.
func TestCleanupStopsAnEarlierJobsLeftovers(t *testing.T) {
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	sleepBin, _ = filepath.EvalSymlinks(sleepBin)
	if filepath.Base(sleepBin) != "sleep" {
		t.Skipf("sleep is %s (a multi-call binary needs its name)", sleepBin)
	}
	for _, tool := range []string{"sh", "setsid", "timeout", "base64", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	tmp := t.TempDir()
	src, dest, state, bin := filepath.Join(tmp, "src"), filepath.Join(tmp, "dest"), filepath.Join(tmp, "state"), filepath.Join(tmp, "bin")
	for _, d := range []string{src, dest, state, bin} {
		os.MkdirAll(d, 0o755)
	}
	data, err := os.ReadFile(sleepBin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "daemon"), data, 0o755)
	os.WriteFile(filepath.Join(src, "kmodlab_no_such_test_module.ko"), []byte("not a module"), 0o644)
	os.WriteFile(filepath.Join(bin, "lava-test-case"), []byte("#!/bin/sh\necho \"LAVA-CASE $*\"\n"), 0o755)
	daemon := filepath.Join(dest, "daemon")
	t.Cleanup(func() {
		for _, p := range running(daemon) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})
	c := runner.CellJob{Target: "s", Cell: "s/atomic",
		Files: []runner.CellFile{
			{Local: filepath.Join(src, "daemon"), Remote: daemon, Mode: 0o755},
			{Local: filepath.Join(src, "kmodlab_no_such_test_module.ko"), Remote: filepath.Join(dest, "kmodlab_no_such_test_module.ko"), Mode: 0o644},
		},
		Steps: []runner.CellStep{
			{Phase: "setup", Name: "daemon", Cmd: daemon + " 300", Timeout: 90 * time.Second, Background: true},
			{Phase: "stress", Name: "odirect", Cmd: daemon + " $STRESS", Timeout: 5 * time.Minute},
		},
		Fetch: []string{filepath.Join(dest, "report.json")},
	}
	archive, err := Pack(c.Files)
	if err != nil {
		t.Fatal(err)
	}
	l := labs(t, "lava:\n  - {name: s, dispatcher: /d.yaml, device_type: ssh, boot: {kernel: lab, image: x86_64}}\n")[0]
	j, err := Render(l, c, RenderOptions{Art: Artefact{Inline: Inline(archive)}, Job: "j"})
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(tmp, "run.sh")
	os.WriteFile(script, []byte(runScript(t, j)), 0o644)
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KL_TMP="+state)

	// The first job: on a clean device the cleanup does nothing; cancelled (its shell
	// killed) once its stress step runs.
	first := exec.Command("sh", script)
	first.Env = append(env, "STRESS=300")
	first.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := first.StdoutPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	var log1 strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		log1.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "KMODLAB-STEP-BEGIN 1 stress") {
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // the stress process starts
	first.Process.Kill()
	first.Wait()
	if !strings.Contains(log1.String(), "LAVA-CASE kmodlab-cleanup --result pass") || strings.Contains(log1.String(), "KMODLAB-CLEANUP ") {
		t.Fatalf("the cleanup on a clean device:\n%s", log1.String())
	}
	var left []int
	for i := 0; i < 50 && len(left) < 2; i++ {
		time.Sleep(100 * time.Millisecond)
		left = running(daemon)
	}
	if len(left) != 2 {
		t.Fatalf("the cancelled job left %v running %s, want its daemon and its stress process", left, daemon)
	}
	os.WriteFile(filepath.Join(dest, "report.json"), []byte("an earlier cell's report"), 0o644)

	// The next job on the same device: the leftovers go first, then its own steps run.
	second := exec.Command("sh", script)
	second.Env = append(env, "STRESS=0")
	got, err := second.CombinedOutput()
	if err != nil {
		t.Fatalf("the second job: %v\n%s", err, got)
	}
	log2 := string(got)
	for _, p := range left {
		if !strings.Contains(log2, "KMODLAB-CLEANUP stopped daemon (pid "+strconv.Itoa(p)+")") {
			t.Errorf("the cleanup does not say it stopped pid %d:\n%s", p, log2)
		}
	}
	for _, p := range running(daemon) {
		for _, old := range left {
			if p == old {
				t.Errorf("the earlier job's pid %d still runs after the cleanup", p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "report.json")); err == nil {
		t.Error("the earlier cell's report survived the cleanup: it would be read as this cell's")
	}
	for _, want := range []string{"LAVA-CASE kmodlab-cleanup --result pass", "KMODLAB-STEP-END 1 0 0", "LAVA-CASE stress-odirect --result pass"} {
		if !strings.Contains(log2, want) {
			t.Errorf("the second job lacks %q:\n%s", want, log2)
		}
	}
	done, failed := readCleanup([]Record{{Lvl: "target", Msg: log2}})
	if len(done) < 2 || failed != "" {
		t.Errorf("readCleanup: %q, %q", done, failed)
	}
}

func TestCleanupOnlyOnReusedDevices(t *testing.T) {
	c := testCell()
	for _, tc := range []struct {
		lab  string
		want bool
	}{
		{rpi4, false},
		{"lava:\n  - {name: s, url: http://x, user: u, token_env: T, device_type: ssh, boot: {kernel: lab, image: x86_64}}\n", true},
		{"lava:\n  - {name: q, url: http://x, user: u, token_env: T, device_type: qemu, boot: {kernel: kmodlab, image: x86_64}}\n", false},
	} {
		l := labs(t, tc.lab)[0]
		j, err := Render(l, c, RenderOptions{Art: Artefact{Inline: "QUJD"}, Images: &Images{Kernel: "k", Initrd: "i"}})
		if err != nil {
			t.Fatal(err)
		}
		s := string(j.YAML)
		call := "kl_cleanup 'userblk' '/root/userblk.ko' '/root/s.json'"
		if strings.Contains(s, call) != tc.want {
			t.Errorf("%s: cleanup %q rendered: %v, want %v", l.DeviceType, call, !tc.want, tc.want)
		}
		if tc.want && strings.Index(s, call) > strings.Index(s, "QUJD") {
			t.Errorf("%s: the cleanup comes after the files are unpacked", l.DeviceType)
		}
	}
}

func TestReadCleanupFailed(t *testing.T) {
	recs := ParseLog([]byte(`{"dt": "x", "lvl": "target", "msg": "KMODLAB-CLEANUP stopped userblkd (pid 7)"}
{"dt": "x", "lvl": "target", "msg": "KMODLAB-CLEANUP-FAILED userblk stays loaded: rmmod: ERROR: Module userblk is in use"}
`))
	done, failed := readCleanup(recs)
	if len(done) != 1 || done[0] != "stopped userblkd (pid 7)" || !strings.Contains(failed, "userblk stays loaded: rmmod: ERROR") {
		t.Errorf("readCleanup: %q, %q", done, failed)
	}
}
