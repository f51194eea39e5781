package sweep

import (
	"testing"

	"github.com/kmodlab/kmodlab/images"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
)

func TestKeep(t *testing.T) {
	k := func(abi, flavour string) images.SweptKernel {
		return images.SweptKernel{ABI: abi, Release: abi + "-" + flavour}
	}
	for _, tc := range []struct {
		k     images.SweptKernel
		globs []string
		rng   string
		want  bool
	}{
		{k("6.1.0-47", "amd64"), nil, "", true},
		{k("6.1.0-47", "amd64"), []string{"6.1.0-5*"}, "", false},
		{k("6.1.0-53", "amd64"), []string{"6.1.0-5*"}, "", true},
		{k("6.1.0-53", "amd64"), []string{"6.1.0-53-amd64"}, "", true},
		{k("6.1.0-53", "amd64"), nil, "6.1.0-53..6.1.0-57", true},
		{k("6.1.0-50", "amd64"), nil, "6.1.0-53..6.1.0-57", false},
		{k("6.12.107+deb12", "amd64"), nil, "6.1.0-53..6.1.0-57", false},
		{k("6.12.107+deb12", "amd64"), nil, "6.12.0..", true},
		{k("7.2.13+deb14", "amd64"), nil, "..6.12.200", false},
	} {
		got, err := keep(tc.k, tc.globs, tc.rng)
		if err != nil || got != tc.want {
			t.Errorf("keep(%s, %v, %q) = %v %v, want %v", tc.k.Release, tc.globs, tc.rng, got, err, tc.want)
		}
	}
	if _, err := keep(k("6.1.0-47", "amd64"), nil, "6.1.0-47"); err == nil {
		t.Error("a range without .. is an error")
	}
}

func TestTable(t *testing.T) {
	cell := func(abi, target string, v verdict.Verdict, warnings int, first string) *report.Cell {
		return &report.Cell{ID: abi + "/" + target, Target: abi, Outcome: report.Outcome{Verdict: v, Met: v == verdict.Built}, Params: map[string]string{"target": target, "version": abi + "-1", "suite": "bookworm"},
			Build: &report.Build{Warnings: warnings, Seconds: 1.25, FirstError: first}}
	}
	e := "rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'"
	r := &report.Run{Cells: []*report.Cell{
		cell("6.1.0-47", "x86_64", verdict.Built, 0, ""), cell("6.1.0-47", "armv7-lpae", verdict.Built, 2, ""),
		cell("6.12.107+deb13", "armv7-lpae", verdict.BuildFailed, 0, e), cell("6.12.107+deb13", "x86_64", verdict.BuildFailed, 0, e),
	}}
	want := `kernel             version              suite               armv7-lpae       x86_64          
6.1.0-47           6.1.0-47-1           bookworm            2 warn 1.2s      built 1.2s      
6.12.107+deb13     6.12.107+deb13-1     bookworm            FAILED [1]!      FAILED [1]!     
[1] rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'
`
	if got := Table(r); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if CellID(Item{Base: "x86_64", Kernel: images.SweptKernel{ABI: "6.1.0-47"}}) != "6.1.0-47/x86_64" {
		t.Error("cell id")
	}
}
