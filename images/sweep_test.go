package images

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/images/debian"
)

// testdata/lists holds the headers and kbuild stanzas of the private apt roots' real
// lists (bookworm with -updates and -security, trixie likewise, their -backports, sid),
// as the archive served them when this was written, the mirror's name replaced.
func sweepLists() map[string]string {
	return map[string]string{
		"bookworm": "testdata/lists/apt", "bookworm-backports": "testdata/lists/apt-bookworm-backports",
		"trixie": "testdata/lists/apt-trixie", "trixie-backports": "testdata/lists/apt-trixie-backports",
		"sid": "testdata/lists/apt-sid",
	}
}

func sweep(t *testing.T, name string) []SweptKernel {
	t.Helper()
	tg := lookup(t, name)
	if tg.Kernel.Resolve != "" { // what Builder.Resolve finds in these lists
		tg.Kernel = Kernel{Resolve: tg.Kernel.Resolve, Release: "7.2.13+deb14-" + tg.Kernel.Resolve, Version: "7.2.13-1"}
	}
	ks, notes, err := KernelsInLists(tg, SweepSuites(tg), sweepLists())
	if err != nil || len(notes) > 0 {
		t.Fatalf("%s: %v %v", name, err, notes)
	}
	return ks
}

func TestSweepKernels(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   string // release@suite, oldest first
	}{
		{"armv7-lpae", "6.1.0-47@bookworm 6.1.0-50@bookworm 6.1.0-53@bookworm-security 6.1.0-54@bookworm-security 6.1.0-55@bookworm-security " +
			"6.1.0-56@bookworm-security 6.1.0-57@bookworm-security 6.12.95+deb12@bookworm-backports 6.12.107+deb12@bookworm-security " +
			"6.12.111+deb12@bookworm-security 6.12.113+deb12@bookworm-security 6.12.115+deb12@bookworm-security 6.12.117+deb12@bookworm-security"},
		// Debian built the 6.12 backport for amd64 and armhf only.
		{"i386-pae", "6.1.0-47@bookworm 6.1.0-50@bookworm 6.1.0-53@bookworm-security 6.1.0-54@bookworm-security 6.1.0-55@bookworm-security " +
			"6.1.0-56@bookworm-security 6.1.0-57@bookworm-security"},
		{"x86_64@trixie", "6.12.107+deb13@trixie 6.12.111+deb13@trixie-security 6.12.113+deb13@trixie-security 6.12.115+deb13@trixie-security " +
			"6.12.116+deb13@trixie-security 6.12.117+deb13@trixie 6.12.118+deb13@trixie-security 7.2.6+deb13@trixie-backports " +
			"7.2.9+deb13@trixie-backports 7.2.11+deb13@trixie-backports 7.2.12+deb13@trixie-backports 7.3.4+deb13@trixie-backports"},
		{"x86_64@sid", "7.2.13+deb14@sid"},
	} {
		var got []string
		for _, k := range sweep(t, tc.target) {
			got = append(got, k.ABI+"@"+k.Suite)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.target, strings.Join(got, " "), tc.want)
		}
	}
}

func TestSweepKernelPackages(t *testing.T) {
	ks := sweep(t, "x86_64")
	by := map[string]SweptKernel{}
	for _, k := range ks {
		by[k.ABI] = k
		// Metapackages (linux-headers-6.12-amd64) and other flavours (rt-amd64, cloud-amd64) are not kernels.
		if k.Release != k.ABI+"-amd64" {
			t.Errorf("%s: release %s", k.ABI, k.Release)
		}
	}
	// The kernel the line boots is the recipe's target itself: the same headers cache.
	if k := by["6.1.0-50"]; !k.Pinned || k.Target.Kernel.Version != "6.1.176-1" {
		t.Errorf("6.1.0-50: %+v", k)
	}
	// An older ABI of the series: bookworm keeps only the newest linux-kbuild-6.1 in
	// each index, which serves it (its headers ask for >= their own version).
	k := by["6.1.0-47"]
	want := "linux-headers-6.1.0-47-amd64:amd64=6.1.170-3 linux-headers-6.1.0-47-common:all=6.1.170-3 linux-kbuild-6.1:amd64=6.1.192-3"
	if got := strings.Join(k.Target.HeaderPackages("amd64"), " "); got != want || k.Pinned || k.Target.Suite != "bookworm" || k.Target.Name != "x86_64" {
		t.Errorf("6.1.0-47: %s (suite %s, name %s), want %s", got, k.Target.Suite, k.Target.Name, want)
	}
	// A kernel of -backports comes through that suite's root, with its own kbuild.
	k = by["6.12.95+deb12"]
	want = "linux-headers-6.12.95+deb12-amd64:amd64=6.12.95-1~bpo12+1 linux-headers-6.12.95+deb12-common:all=6.12.95-1~bpo12+1 linux-kbuild-6.12.95+deb12:amd64=6.12.95-1~bpo12+1"
	if got := strings.Join(k.Target.HeaderPackages("amd64"), " "); got != want || k.Target.Suite != "bookworm-backports" {
		t.Errorf("6.12.95+deb12: %s (suite %s), want %s", got, k.Target.Suite, want)
	}
	// trixie's kernels keep the line's kbuild libraries (their tools need trixie's glibc).
	for _, k := range sweep(t, "armv7-lpae@trixie") {
		if len(k.Target.KbuildLibs) == 0 || k.Target.Name != "armv7-lpae@trixie" {
			t.Errorf("%s: kbuild_libs %v, name %s", k.Release, k.Target.KbuildLibs, k.Target.Name)
		}
	}
}

func TestFlavourAndKbuildPick(t *testing.T) {
	for rel, want := range map[string]string{"6.1.0-50-armmp-lpae": "armmp-lpae", "6.12.107+deb13-amd64": "amd64",
		"6.1.0-50-686-pae": "686-pae", "6.12.12+bpo-amd64": "amd64", "6.1.0-0.deb11.13-amd64": "amd64"} {
		if got := Flavour(Kernel{Release: rel}); got != want {
			t.Errorf("Flavour(%s) = %s, want %s", rel, got, want)
		}
	}
	if got := Flavour(Kernel{Resolve: "armmp-lpae"}); got != "armmp-lpae" {
		t.Errorf("resolve: %s", got)
	}
	for _, tc := range []struct {
		version, min string
		avail        []string
		want         string
	}{
		{"6.1.176-1", "6.1.176-1", []string{"6.1.192-3", "6.1.176-1"}, "6.1.176-1"}, // its own
		{"6.1.170-3", "6.1.170-3", []string{"6.1.176-1", "6.1.192-3"}, "6.1.192-3"}, // the newest that serves it
		{"6.1.200-1", "6.1.200-1", []string{"6.1.176-1", "6.1.192-3"}, ""},          // none new enough
	} {
		got, ok := PickKbuild(tc.version, tc.min, tc.avail)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("PickKbuild(%s, %v) = %s %v, want %s", tc.version, tc.avail, got, ok, tc.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.1.170-3", "6.1.192-3", -1}, {"6.1.192-3", "6.1.192-2", 1}, {"6.12.95-1~bpo12+1", "6.12.107-1~deb12u1", -1},
		{"6.12.107-1~deb12u1", "6.12.107-1", -1}, {"1:1.0", "2.0", 1}, {"1.0", "1.0", 0}, {"1.0~rc1", "1.0", -1},
		{"1.0a", "1.0", 1}, {"1.0-1", "1.0", 1}, {"6.1.76-1", "6.1.170-3", -1},
	} {
		got := debian.CompareVersions(tc.a, tc.b)
		if (got < 0) != (tc.want < 0) || (got > 0) != (tc.want > 0) {
			t.Errorf("CompareVersions(%s, %s) = %d, want %s", tc.a, tc.b, got, fmt.Sprint(tc.want))
		}
	}
}
