package board

import (
	"context"
	"fmt"
	"strings"
)

// Health is what `kmodlab runners check` reports for a board.
type Health struct {
	Board     string `json:"board"`
	OK        bool   `json:"ok"`
	Busy      bool   `json:"busy,omitempty"` // every slot taken: not checked
	Machine   string `json:"machine"`
	Kernel    string `json:"kernel"`
	Headers   bool   `json:"headers"`
	MemFreeKB int64  `json:"mem_available_kb"`
	Problem   string `json:"problem,omitempty"`
}

// Check is the health check: reachable with the pinned host key, arch, kernel,
// headers (for native builds) and free memory. A failing board is quarantined; a
// passing one is released from quarantine.
func (b *Board) Check(ctx context.Context) *Health {
	h := &Health{Board: b.Name}
	fail := func(p string) *Health {
		h.Problem = p
		b.SetQuarantine(p)
		return h
	}
	// A board whose slots are all taken is running someone's job: it is busy, which
	// says nothing about its health, so it is neither checked nor quarantined.
	sl, err := b.trySlot()
	if err != nil {
		h.Problem = err.Error()
		return h
	}
	if sl == nil {
		h.Busy = true
		h.Problem = fmt.Sprintf("busy: all %d job slots in use (not checked, not quarantined)", max(1, b.MaxJobs))
		return h
	}
	s, err := b.attachHeld(ctx, sl)
	if err != nil {
		return fail(err.Error())
	}
	defer s.Close()
	h.Kernel = s.info.KernelRelease
	out, err := s.c.Output(ctx, "uname -m; test -d /lib/modules/$(uname -r)/build && echo headers=yes || echo headers=no; grep MemAvailable /proc/meminfo")
	if err != nil {
		return fail("probe: " + err.Error())
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 0 {
		h.Machine = lines[0]
	}
	h.Headers = strings.Contains(out, "headers=yes")
	fmt.Sscanf(after(out, "MemAvailable:"), "%d", &h.MemFreeKB)
	if want := machineFor(b.Arch); want != "" && !strings.HasPrefix(h.Machine, want) {
		return fail(fmt.Sprintf("arch: runners.yaml says %s, the board is %s", b.Arch, h.Machine))
	}
	if b.Build == buildNative && !h.Headers {
		return fail("no kernel headers at /lib/modules/$(uname -r)/build (install raspberrypi-kernel-headers or linux-headers-$(uname -r))")
	}
	if h.MemFreeKB > 0 && h.MemFreeKB < 64*1024 {
		return fail(fmt.Sprintf("only %d kB available", h.MemFreeKB))
	}
	h.OK = true
	b.SetQuarantine("")
	return h
}

func machineFor(goarch string) string {
	return map[string]string{"arm": "armv", "arm64": "aarch64", "386": "i", "amd64": "x86_64"}[goarch]
}

func after(s, key string) string {
	if i := strings.Index(s, key); i >= 0 {
		return strings.TrimSpace(s[i+len(key):])
	}
	return ""
}
