package main

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/kmodlab/kmodlab/internal/cleanup"
	"github.com/kmodlab/kmodlab/lab/report"
)

func TestSecondSignalExitsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	cleaned := make(chan bool, 1)
	defer cleanup.Register(func() { cleaned <- true })()
	go handleSignals(sigs, cancel, func(code int) { exited <- code })
	sigs <- os.Interrupt
	<-ctx.Done() // the first one cancels, so the command cleans up
	select {
	case <-cleaned:
		t.Fatal("the first signal ran the emergency clean-up")
	default:
	}
	select {
	case code := <-exited:
		t.Fatalf("exited (%d) on the first signal, before cleaning up", code)
	default:
	}
	sigs <- syscall.SIGTERM
	if code := <-exited; code != report.ExitInfra {
		t.Errorf("second signal: exit %d, want %d", code, report.ExitInfra)
	}
	select {
	case <-cleaned:
	default:
		t.Error("the second signal exited without the emergency clean-up (guests' temp dirs left behind)")
	}
}
