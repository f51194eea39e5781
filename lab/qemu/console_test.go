package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	c, err := newConsole(path)
	if err != nil {
		t.Fatal(err)
	}
	c.read(strings.NewReader("booting\r\nKMODLAB-READY 6.1 up 1.0\r\n[ 9.1] Kernel panic - not syncing: Fatal exception\nlast"))
	if !c.Ready() {
		t.Error("ready marker missed")
	}
	if r := c.Crash(); r == nil || r.Title != "kernel panic: Fatal exception" {
		t.Errorf("crash = %+v", r)
	}
	want := "booting\nKMODLAB-READY 6.1 up 1.0\n[ 9.1] Kernel panic - not syncing: Fatal exception\nlast\n"
	if c.Text() != want || c.Len() != len(want) {
		t.Errorf("text %q", c.Text())
	}
	if c.Tail(1) != "last" {
		t.Errorf("tail %q", c.Tail(1))
	}
	c.close()
	if data, _ := os.ReadFile(path); string(data) != want {
		t.Errorf("console log %q", data)
	}
}
