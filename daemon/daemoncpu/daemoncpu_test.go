package daemoncpu

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLastOf(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "0-3\n": 3, "0-2,5": 5, "0,2-7": 7} {
		got, ok := lastOf(in)
		if !ok || got != want {
			t.Errorf("lastOf(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if _, ok := lastOf("garbage"); ok {
		t.Error("lastOf accepted garbage")
	}
}

func TestDaemonReadsOnlineList(t *testing.T) {
	f := filepath.Join(t.TempDir(), "online")
	if err := os.WriteFile(f, []byte("0-6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := OnlineFile
	OnlineFile = f
	defer func() { OnlineFile = old }()
	if d := Daemon(); d != 6 {
		t.Errorf("Daemon() = %d, want 6", d)
	}
	for _, c := range Others() {
		if c == 6 {
			t.Error("Others() includes the daemon's CPU")
		}
	}
	if len(Others()) == 0 {
		t.Error("Others() is empty")
	}
}

// The guests' isolcpus= names the CPU Daemon picks on them: the last; none on one CPU.
func TestIsolcpus(t *testing.T) {
	for smp, want := range map[int]string{0: "", 1: "", 2: "isolcpus=1", 4: "isolcpus=3"} {
		if got := Isolcpus(smp); got != want {
			t.Errorf("Isolcpus(%d) = %q, want %q", smp, got, want)
		}
	}
}
