// Package daemoncpu is the one place of the lab's CPU convention: the last online CPU
// belongs to userblkd, and stress tools run their threads on the others. The guests boot
// with that CPU isolated (isolcpus=), so it runs nothing but the daemon: a switch
// between two processes flushes an emulated CPU's whole TLB and would hide the stale
// mappings the lab looks for.
package daemoncpu

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Isolcpus is the kernel parameter a machine of smp CPUs boots with to keep the
// daemon's CPU (the last, as Daemon finds it) for the daemon alone; "" on a single CPU,
// which the daemon shares. Guest command lines get it from here (images), never by hand.
func Isolcpus(smp int) string {
	if smp < 2 {
		return ""
	}
	return "isolcpus=" + strconv.Itoa(smp-1)
}

// OnlineFile lists the online CPUs ("0-3"); a variable so tests can point it elsewhere.
var OnlineFile = "/sys/devices/system/cpu/online"

// Daemon is the daemon's CPU: the last online one. It reads the online list, not
// runtime.NumCPU, which counts only the CPUs of our affinity mask and so leaves out the
// isolcpus= CPUs, the very ones meant for the daemon.
func Daemon() int {
	data, err := os.ReadFile(OnlineFile)
	if err != nil {
		return runtime.NumCPU() - 1
	}
	n, ok := lastOf(string(data))
	if !ok {
		return runtime.NumCPU() - 1
	}
	return n
}

// lastOf returns the highest CPU of a list like "0-2,5" or "0".
func lastOf(list string) (int, bool) {
	s := strings.TrimSpace(list)
	if i := strings.LastIndexAny(s, ",-"); i >= 0 {
		s = s[i+1:]
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

// Others returns the CPUs of the caller's affinity mask except the daemon's, or CPU 0
// alone when nothing else is left.
func Others() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return []int{0}
	}
	d := Daemon()
	var out []int
	for c := 0; c < 1024; c++ {
		if set.IsSet(c) && c != d {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return []int{0}
	}
	return out
}

// Pin keeps the calling thread on cpu (children inherit the mask).
func Pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}
