package lava

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// client is the entry's API client, with its token from the environment.
func (l *Lab) client() (*Client, error) {
	tok := os.Getenv(l.TokenEnv)
	if tok == "" {
		return nil, fmt.Errorf("%s: lava %s: token_env %s is not set (the lab's API token goes in that environment variable)", l.Where(), l.Name, l.TokenEnv)
	}
	return &Client{URL: l.APIURL(), User: l.User, Token: tok}, nil
}

// queued reports a state before the job runs.
func queued(state string) bool {
	return state == "Submitted" || state == "Scheduling" || state == "Scheduled" || state == ""
}

// submit submits the job, follows its state and log (a queue wait shows as such),
// and returns it ended. A job still waiting for a device after queue_timeout is
// cancelled; Ctrl-C cancels it in the lab too.
func (p *Provider) submit(ctx context.Context, l *Lab, c runner.CellJob, j *Job) (*result, error) {
	cl, err := l.client()
	if err != nil {
		return nil, err
	}
	id, err := cl.Submit(ctx, j.YAML)
	if err != nil {
		if errors.Is(err, ErrAuth) {
			return nil, fmt.Errorf("lava %s: %w (user %s, token from %s)", l.Name, err, l.User, l.TokenEnv)
		}
		return nil, fmt.Errorf("lava %s: submit: %w", l.Name, err)
	}
	res := &result{id: id, url: l.JobURL(id)}
	p.progress(c.Cell, "submitted: lava job %d (%s)", id, res.url)
	cancel := func(why string) {
		cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer stop()
		if err := cl.Cancel(cctx, id); err != nil {
			p.progress(c.Cell, "cancel job %d (%s): %v", id, why, err)
		}
	}
	submitted := time.Now()
	var started time.Time
	var log bytes.Buffer
	lines := 0
	lastNote := time.Time{}
	poll := p.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	qt := l.QueueTimeout.D(time.Hour)
	for {
		select {
		case <-ctx.Done():
			cancel("interrupted")
			return nil, fmt.Errorf("%s: %w: Canceled: %v", res.ref(), ErrEnded, ctx.Err())
		case <-time.After(poll):
		}
		info, err := cl.Show(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return nil, fmt.Errorf("%s: %w", res.ref(), err)
		}
		res.device, res.health = info.Device, info.Health
		if queued(info.State) {
			wait := time.Since(submitted)
			if wait > qt {
				cancel("queue timeout")
				return nil, fmt.Errorf("%s: no %s device took the job within queue_timeout %s (state %s; job cancelled)", res.ref(), l.DeviceType, qt, info.State)
			}
			if time.Since(lastNote) >= 30*time.Second {
				p.progress(c.Cell, "queued %s for a %s device (job %d %s)", wait.Round(time.Second), l.DeviceType, id, info.State)
				lastNote = time.Now()
			}
			continue
		}
		if started.IsZero() {
			started = time.Now()
			p.progress(c.Cell, "running on %s after %s in the queue", info.Device, started.Sub(submitted).Round(time.Second))
		}
		finished, data, err := cl.Logs(ctx, id, lines)
		if err == nil {
			log.Write(data)
			lines += bytes.Count(data, []byte("\n"))
		}
		if info.State == "Finished" {
			for i := 0; i < 20 && !finished && err == nil; i++ { // the rest of the log
				finished, data, err = cl.Logs(ctx, id, lines)
				log.Write(data)
				lines += bytes.Count(data, []byte("\n"))
				if !finished {
					time.Sleep(time.Second)
				}
			}
			res.log = log.Bytes()
			p.progress(c.Cell, "job %d %s on %s after %s (%d log lines)", id, info.Health, info.Device, time.Since(started).Round(time.Second), lines)
			return res, nil
		}
		if time.Since(lastNote) >= 30*time.Second {
			p.progress(c.Cell, "running on %s for %s (%d log lines)", info.Device, time.Since(started).Round(time.Second), lines)
			lastNote = time.Now()
		}
	}
}
