package qemu

import (
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/images"
)

func TestArgs(t *testing.T) {
	arm, _ := images.Lookup("armv7-lpae")
	a := strings.Join(Args(Spec{Target: arm, Kernel: "K", Initrd: "I", Accel: AccelTCG, SSHPort: 2222, QMP: "/tmp/q.sock"}), " ")
	for _, want := range []string{"-M virt,highmem=on", "-m 3072", "-smp 4", "-accel tcg,thread=multi", "-cpu cortex-a15",
		"console=ttyAMA0", "rodata=off isolcpus=3", "-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22", "-device virtio-net-device,netdev=n0",
		"-qmp unix:/tmp/q.sock,server=on,wait=off", "-kernel K", "-initrd I"} {
		if !strings.Contains(a, want) {
			t.Errorf("arm args lack %q:\n%s", want, a)
		}
	}
	if strings.Count(a, "-netdev") != 1 || strings.Contains(a, "guestfwd") {
		t.Errorf("the guest's network is more than the restricted SSH forward:\n%s", a)
	}
	if strings.Contains(a, "-vga") {
		t.Error("the ARM virt board has no VGA option")
	}
	// An arm-image: QEMU's -kernel is the stub, the kernel goes in by the generic loader.
	s := strings.Join(Args(Spec{Target: arm, Kernel: "/img/Image", BootStub: "/img/boot-stub.bin", Initrd: "I", Accel: AccelTCG, SSHPort: 1, QMP: "q"}), " ")
	if !strings.Contains(s, "-kernel /img/boot-stub.bin -device loader,file=/img/Image,addr=0x40208000,force-raw=on") ||
		strings.Contains(s, "-kernel /img/Image") {
		t.Errorf("arm-image args:\n%s", s)
	}
	// isolcpus= follows the CPUs the guest gets, the recipe's or an override.
	if one := strings.Join(Args(Spec{Target: arm, Kernel: "K", Initrd: "I", Accel: AccelTCG, SSHPort: 1, QMP: "q", SMP: 1}), " "); strings.Contains(one, "isolcpus") {
		t.Errorf("one CPU isolated for the daemon:\n%s", one)
	}
	if two := strings.Join(Args(Spec{Target: arm, Kernel: "K", Initrd: "I", Accel: AccelTCG, SSHPort: 1, QMP: "q", SMP: 2}), " "); !strings.Contains(two, "isolcpus=1") || strings.Contains(two, "isolcpus=3") {
		t.Errorf("-smp 2 must isolate CPU 1:\n%s", two)
	}
	// arm64: Debian's Image goes straight to -kernel on the virt board's Cortex-A72s.
	a64, _ := images.Lookup("arm64")
	c := strings.Join(Args(Spec{Target: a64, Kernel: "/img/Image", Initrd: "I", Accel: AccelTCG, SSHPort: 1, QMP: "q"}), " ")
	for _, want := range []string{"-M virt ", "-smp 4", "-accel tcg,thread=multi", "-cpu cortex-a72", "console=ttyAMA0",
		"-kernel /img/Image -initrd I", "-device virtio-net-device,netdev=n0"} {
		if !strings.Contains(c, want) {
			t.Errorf("arm64 args lack %q:\n%s", want, c)
		}
	}
	if strings.Contains(c, "-vga") || strings.Contains(c, "loader,") {
		t.Errorf("arm64: no VGA option and no generic loader:\n%s", c)
	}
	x, _ := images.Lookup("i386-pae")
	b := strings.Join(Args(Spec{Target: x, Kernel: "K", Initrd: "I", Accel: AccelKVM, SSHPort: 1, QMP: "q"}), " ")
	for _, want := range []string{"-m 6144", "-accel kvm", "-cpu host", "console=ttyS0", "noisapnp isolcpus=1", "-device pvpanic", "virtio-net-pci"} {
		if !strings.Contains(b, want) {
			t.Errorf("i386 args lack %q:\n%s", want, b)
		}
	}
}

func TestResolveAccel(t *testing.T) {
	arm, _ := images.Lookup("armv7-lpae")
	if a, _, err := ResolveAccel(AccelAuto, arm); err != nil || a != AccelTCG {
		t.Errorf("ARM on x86 must be TCG: %s %v", a, err)
	}
	if _, _, err := ResolveAccel(AccelKVM, arm); err == nil {
		t.Error("kvm for ARM on x86 must be refused")
	}
	if a64, _ := images.Lookup("arm64"); a64 != nil {
		if a, _, err := ResolveAccel(AccelAuto, a64); err != nil || a != AccelTCG {
			t.Errorf("arm64 on x86 must be TCG: %s %v", a, err)
		}
	}
	if _, _, err := ResolveAccel("fast", arm); err == nil {
		t.Error("unknown accel must be refused")
	}
}
