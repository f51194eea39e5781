package board

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Match returns the boards named name or labelled name.
func (c *Config) Match(name string) []*Board {
	var out []*Board
	for _, b := range c.Boards {
		if b.Name == name {
			return []*Board{b}
		}
		for _, l := range b.Labels {
			if l == name {
				out = append(out, b)
			}
		}
	}
	return out
}

// Pick returns a usable board for name (a board or a label), skipping quarantined ones
// and preferring one with a free slot. A board whose slots are all busy is busy, not
// unusable: it is returned when no other board is idle.
func (c *Config) Pick(name string) (*Board, error) {
	usable, err := c.usable(name)
	if err != nil {
		return nil, err
	}
	for _, b := range usable {
		if b.idle() {
			return b, nil
		}
	}
	return usable[0], nil
}

// usable lists the boards for name that are not quarantined.
func (c *Config) usable(name string) ([]*Board, error) {
	bs := c.Match(name)
	if len(bs) == 0 {
		return nil, fmt.Errorf("no board or label %q in %s", name, c.File)
	}
	var why []string
	var out []*Board
	for _, b := range bs {
		if reason := b.Quarantined(); reason != "" {
			why = append(why, b.Name+": "+reason)
			continue
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("every board for %q is quarantined until 'kmodlab runners check' passes: %s", name, strings.Join(why, "; "))
	}
	return out, nil
}

// Attach attaches the first idle board for name (a board or a label). When every usable
// board is busy it waits until one has a free slot (or ctx ends), taking whichever frees
// first: a label does not wait on one board while another with the label is idle.
func (c *Config) Attach(ctx context.Context, name string) (*Session, error) {
	for {
		usable, err := c.usable(name)
		if err != nil {
			return nil, err
		}
		for _, b := range usable {
			slot, err := b.trySlot()
			if err != nil {
				return nil, err
			}
			if slot != nil {
				return b.attachHeld(ctx, slot)
			}
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, b := range usable {
				names = append(names, b.Name)
			}
			return nil, fmt.Errorf("every board for %q is busy (%s): %w", name, strings.Join(names, ", "), ctx.Err())
		case <-time.After(c.poll()):
		}
	}
}

func (c *Config) poll() time.Duration {
	if c == nil || c.PollInterval == 0 {
		return time.Second
	}
	return c.PollInterval
}
