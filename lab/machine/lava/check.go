package lava

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Health is what `kmodlab runners check` says about a lab entry.
type Health struct {
	OK                  bool
	User                string // the token's user, as the lab says
	Idle, Busy, Offline int    // devices of the entry's type
	Problem             string
}

// Check asks the lab whether it answers, whether the token works, and how many
// devices of the entry's type are idle, busy or offline. A local dispatcher entry
// checks lava-run and its device file.
func (l *Lab) Check(ctx context.Context) *Health {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h := &Health{}
	if l.Dispatcher != "" {
		if _, err := exec.LookPath("lava-run"); err != nil {
			h.Problem = "no lava-run on this machine (apt-get install lava-dispatcher)"
			return h
		}
		if _, err := os.Stat(l.Dispatcher); err != nil {
			h.Problem = "dispatcher: " + err.Error()
			return h
		}
		h.OK, h.Idle = true, 1
		return h
	}
	cl, err := l.client()
	if err != nil {
		h.Problem = err.Error()
		return h
	}
	user, err := cl.WhoAmI(ctx)
	switch {
	case errors.Is(err, ErrAuth):
		h.Problem = fmt.Sprintf("reachable, but the token in %s does not log in as %s: %v", l.TokenEnv, l.User, err)
		return h
	case err != nil:
		h.Problem = fmt.Sprintf("unreachable: %v", err)
		return h
	case user == "":
		h.Problem = fmt.Sprintf("reachable, but the token in %s does not log in (the lab sees an anonymous user)", l.TokenEnv)
		return h
	}
	h.User = user
	devs, err := cl.Devices(ctx)
	if err != nil {
		h.Problem = fmt.Sprintf("token works (%s), but the device list failed: %v", user, err)
		return h
	}
	for _, d := range devs {
		if d.Type != l.DeviceType {
			continue
		}
		switch {
		case d.Health == "Bad" || d.Health == "Maintenance" || d.Health == "Retired" || d.Health == "Looping":
			h.Offline++
		case d.State == "Idle":
			h.Idle++
		default:
			h.Busy++
		}
	}
	if h.Idle+h.Busy == 0 {
		h.Problem = fmt.Sprintf("no usable %s device (%d offline): jobs would wait for queue_timeout", l.DeviceType, h.Offline)
		return h
	}
	h.OK = true
	return h
}
