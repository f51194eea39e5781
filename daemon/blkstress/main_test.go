package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/stressreport"
	"golang.org/x/sys/unix"
)

func TestPatternAndDescribe(t *testing.T) {
	a := make([]byte, blockSize)
	b := make([]byte, blockSize)
	fill(a, 7, 12, 3)
	fill(b, 7, 12, 3)
	if string(a) != string(b) {
		t.Fatal("the same seed, block and generation must give the same bytes")
	}
	if got := describe(a); got != "block 12 gen 3" {
		t.Errorf("describe = %q", got)
	}
	fill(b, 7, 12, 4)
	if string(a) == string(b) {
		t.Fatal("generations must differ")
	}
	b[100] ^= 1
	if got := describe(b); got != "block 12 gen 4 (torn: payload crc wrong)" {
		t.Errorf("torn: %q", got)
	}
	if describe(make([]byte, blockSize)) != "zeros" {
		t.Error("zeros")
	}
}

func TestCheckFindsWrongBlock(t *testing.T) {
	s := &state{rep: &stressreport.Report{FirstMS: -1}, o: opts{seed: 7}}
	got := make([]byte, blockSize)
	fill(got, 7, 99, 1) // block 99's data where block 12 should be
	check(s, got, "", 12, 12*blockSize, 1, 0, 0)
	if s.rep.Mismatches != 1 || s.details[0].Holds != "block 99 gen 1" {
		t.Fatalf("%+v", s.rep)
	}
	fill(got, 7, 12, 1)
	check(s, got, "", 12, 12*blockSize, 1, 0, 0)
	check(s, got, "", 12, 12*blockSize, unknownGen, 0, 0)
	if s.rep.Mismatches != 1 {
		t.Error("a correct block or one of unknown contents is not a mismatch")
	}
}

func TestParseCPUs(t *testing.T) {
	got, err := parseCPUs("0-2,5", 8)
	if err != nil || len(got) != 4 || got[3] != 5 {
		t.Errorf("%v %v", got, err)
	}
	for _, bad := range []string{"a", "3-1", "2048"} {
		if _, err := parseCPUs(bad, 8); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if d, _ := parseCPUs("", 8); len(d) == 0 {
		t.Error("default CPU list is empty")
	}
}

// TestStopsCleanlyOnSIGTERM runs the real tool on a file: it prints progress lines,
// and SIGTERM ends it long before its duration with a complete report and exit 0.
func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "blkstress")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dev := filepath.Join(dir, "dev")
	if err := os.WriteFile(dev, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if fd, err := unix.Open(dev, unix.O_RDWR|unix.O_DIRECT, 0); err != nil {
		t.Skipf("this filesystem has no O_DIRECT: %v", err)
	} else {
		unix.Close(fd)
	}
	out := filepath.Join(dir, "report.json")
	cmd := exec.Command(bin, "-dev", dev, "-span", "4194304", "-duration", "5m", "-progress", "20ms", "-cpus", "0", "-json", out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	var last stressreport.Progress
	lines := 0
	for sc.Scan() {
		if p, ok := stressreport.ParseProgress(sc.Text()); ok {
			last, lines = p, lines+1
			if p.Reads > 0 && p.Writes > 0 && lines >= 3 {
				break
			}
		}
	}
	if lines < 3 {
		t.Fatalf("%d progress lines before the tool ended", lines)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v (want exit 0)", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("ran %s of its 5m: SIGTERM did not stop it", d)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no report after SIGTERM: %v", err)
	}
	rep, err := stressreport.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Reads < last.Reads || rep.Writes < last.Writes || rep.Mismatches != 0 || rep.IOErrors != 0 || len(rep.Errors) > 0 {
		t.Fatalf("report %+v after progress %+v", rep, last)
	}
}
