// Package qemu starts a guest image under QEMU, watches its serial console, drives it
// through QMP (github.com/digitalocean/go-qemu) and tears it down on every path.
package qemu

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/kmodlab/kmodlab/images"
)

// Accel values.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Spec is everything that decides the QEMU command line.
type Spec struct {
	Target   *images.Target
	Kernel   string
	BootStub string // arm-image: -kernel is this stub, Kernel goes in by the generic loader
	Initrd   string
	Accel    string // kvm or tcg (resolved)
	SSHPort  int    // host port forwarded to the guest's 22
	QMP      string // unix socket path
	Append   string // extra kernel command line
	MemoryMB int    // 0: the recipe's
	SMP      int    // 0: the recipe's
}

// Args builds the QEMU argument list (without the binary).
func Args(s Spec) []string {
	q := s.Target.QEMU
	mem, smp := q.MemoryMB, q.SMP
	if s.MemoryMB > 0 {
		mem = s.MemoryMB
	}
	if s.SMP > 0 {
		smp = s.SMP
	}
	machine := q.Machine
	var a []string
	if machine != "" {
		a = append(a, "-M", machine)
	}
	a = append(a, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(smp))
	if s.Accel == AccelKVM {
		cpu := q.CPUKVM
		if cpu == "" {
			cpu = "host"
		}
		a = append(a, "-accel", "kvm", "-cpu", cpu)
	} else {
		a = append(a, "-accel", "tcg,thread=multi", "-cpu", q.CPU)
	}
	// log_buf_len: trace lines of a whole stress run stay in the kernel's buffer;
	// loglevel=5: only warnings and worse reach the slow serial console.
	cmdline := []string{"console=" + q.Console, "rdinit=/init", "loglevel=5", "log_buf_len=16M",
		"panic=-1", "printk.devkmsg=on", "sysrq_always_enabled"} // sysrq: Diagnose's task dumps from the serial line
	if c := q.Cmdline(smp); c != "" {
		cmdline = append(cmdline, c)
	}
	if s.Append != "" {
		cmdline = append(cmdline, s.Append)
	}
	a = append(a, s.Target.KernelArgs(s.Kernel, s.BootStub)...)
	a = append(a,
		"-initrd", s.Initrd,
		"-append", strings.Join(cmdline, " "),
		"-display", "none", "-vga", "none", "-no-user-config", "-nodefaults", "-no-reboot",
		"-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0",
		"-qmp", "unix:"+s.QMP+",server=on,wait=off",
		// restrict=on: the guest reaches nothing through slirp (not the host's loopback
		// services, not the network beyond); the host's forward to its SSH port, all
		// the lab uses, still works.
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", s.SSHPort),
		"-device", q.NetDevice+",netdev=n0",
	)
	for _, d := range q.Devices {
		a = append(a, "-device", d)
	}
	if strings.HasPrefix(machine, "virt") {
		// -vga is an x86 option; the ARM virt board has no VGA to turn off.
		a = removePair(a, "-vga")
	}
	return a
}

func removePair(a []string, flag string) []string {
	out := a[:0:0]
	for i := 0; i < len(a); i++ {
		if a[i] == flag {
			i++
			continue
		}
		out = append(out, a[i])
	}
	return out
}

// ResolveAccel turns auto into kvm or tcg by a real check, never by /dev/kvm existing:
// the target's ISA must be the host's, the CPU must have vmx or svm, and /dev/kvm must not
// be kvm_pvm (which cannot boot stock kernels). It returns the reason for the log.
func ResolveAccel(want string, t *images.Target) (string, string, error) {
	switch want {
	case AccelTCG:
		return AccelTCG, "asked for tcg", nil
	case AccelKVM:
		if !t.QEMU.KVM {
			return "", "", fmt.Errorf("target %s cannot run under KVM on this host (different ISA)", t.Name)
		}
		if err := kvmUsable(); err != nil {
			return "", "", fmt.Errorf("--accel kvm: %w", err)
		}
		return AccelKVM, "asked for kvm", nil
	case AccelAuto, "":
		if !t.QEMU.KVM {
			return AccelTCG, "guest ISA differs from the host's", nil
		}
		if err := kvmUsable(); err != nil {
			return AccelTCG, err.Error(), nil
		}
		return AccelKVM, "/dev/kvm usable and the CPU has hardware virtualization", nil
	}
	return "", "", fmt.Errorf("--accel %q: want kvm, tcg or auto", want)
}

func kvmUsable() error {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return fmt.Errorf("/dev/kvm is kvm_pvm, which cannot boot stock kernels")
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	virt := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "flags") && (strings.Contains(l, " vmx") || strings.Contains(l, " svm")) {
			virt = true
			break
		}
	}
	if !virt {
		return fmt.Errorf("the CPU has no vmx/svm flag (nested virtualization off)")
	}
	k, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		if os.IsPermission(err) {
			return fmt.Errorf("/dev/kvm: permission denied (add yourself to the kvm group, or on GitHub runners add the udev rule in the README)")
		}
		return fmt.Errorf("/dev/kvm: %w", err)
	}
	k.Close()
	return nil
}

// Binary finds the QEMU binary for t; the error names the Debian package to install.
func Binary(t *images.Target) (string, error) {
	p, err := exec.LookPath(t.QEMU.Binary)
	if err != nil {
		return "", fmt.Errorf("%s not found: install it with 'sudo apt-get install %s' (or run 'make setup')", t.QEMU.Binary, t.QEMU.Package)
	}
	return p, nil
}
