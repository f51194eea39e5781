package lava

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

var localJobs atomic.Int64

// dispatch runs the job with a local lava-run on the entry's device file: the same
// dispatcher a lab's worker runs, without a server. Its log is lava-run's output;
// Ctrl-C cancels the job the way a server would (SIGTERM: lava-run's own cancel).
func (p *Provider) dispatch(ctx context.Context, l *Lab, c runner.CellJob, j *Job) (*result, error) {
	if _, err := exec.LookPath("lava-run"); err != nil {
		return nil, fmt.Errorf("lava %s: dispatcher: no lava-run on this machine (apt-get install lava-dispatcher)", l.Name)
	}
	dir, err := os.MkdirTemp("", "kmodlab-lava-run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	def := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(def, j.YAML, 0o644); err != nil {
		return nil, err
	}
	id := int(time.Now().Unix()%1000000)*100 + int(localJobs.Add(1)%100)
	cmd := exec.Command("lava-run", "--job-id", fmt.Sprint(id), "--output-dir", filepath.Join(dir, "out"), "--device", l.Dispatcher, def)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	p.progress(c.Cell, "lava-run job %d on %s", id, l.Dispatcher)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lava-run: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	canceled := false
	select {
	case <-done:
	case <-ctx.Done():
		canceled = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	p.progress(c.Cell, "lava-run job %d ended after %.0f s", id, time.Since(t0).Seconds())
	res := &result{id: id, device: filepath.Base(l.Dispatcher), log: out.Bytes(), local: true, health: HealthComplete}
	typ, _ := Failure(ParseLog(res.log))
	switch {
	case canceled || typ == "Canceled":
		res.health = HealthCanceled
	case typ != "":
		res.health = HealthIncomplete
	}
	if canceled {
		return res, fmt.Errorf("%s: %w: Canceled: %v", res.ref(), ErrEnded, ctx.Err())
	}
	return res, nil
}

// hostCommand runs a command line of runners.yaml on this host.
func hostCommand(ctx context.Context, line string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
	return string(out), err
}
