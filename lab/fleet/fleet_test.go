package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/machine/board"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// farm is a registered batch kind, as a lab of boards would be.
type farm struct{ cells []string }

func (*farm) Kind() runner.Kind     { return "farm" }
func (*farm) Owns(name string) bool { return strings.HasPrefix(name, "farm-") }
func (*farm) Names() []string       { return []string{"farm-pi4"} }
func (*farm) Describe(n string) (runner.Info, error) {
	return runner.Info{Name: n, Kind: "farm", GOARCH: "arm"}, nil
}
func (*farm) Strategy(context.Context, string, string, bool) (build.Strategy, error) {
	return build.Native{}, nil
}
func (*farm) Acquire(context.Context, string, string) (runner.Runner, error) { return nil, ErrBatch }
func (f *farm) RunCell(_ context.Context, c runner.CellJob) (*runner.CellLog, error) {
	f.cells = append(f.cells, c.Cell)
	return &runner.CellLog{Ref: "job 1"}, nil
}

const boardsYAML = `boards:
  - name: pi4
    labels: [arm-lpae]
    address: 192.0.2.1
    user: root
    identity: /dev/null
    host_key: SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
    arch: arm
`

func TestProvidersOwnTheirNames(t *testing.T) {
	cfg, err := board.Parse("runners.yaml", []byte(boardsYAML), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fm := &farm{}
	f := &Fleet{Boards: cfg, Kinds: []Provider{fm}}
	for name, want := range map[string]runner.Kind{"x86_64": runner.KindQEMU, "armv7-lpae@trixie": runner.KindQEMU,
		"pi4": runner.KindBoard, "arm-lpae": runner.KindBoard, "farm-pi4": "farm", "nosuch": ""} {
		if got := f.KindOf(name); got != want {
			t.Errorf("KindOf(%s) = %q, want %q", name, got, want)
		}
	}
	if i, err := f.Describe("x86_64"); err != nil || i.Kind != runner.KindQEMU || i.Build != "cross" || i.GOARCH != "amd64" {
		t.Errorf("Describe(x86_64) = %+v, %v", i, err)
	}
	if i, err := f.Describe("arm-lpae"); err != nil || i.Name != "pi4" || i.Kind != runner.KindBoard || i.Build != "native" {
		t.Errorf("Describe(arm-lpae) = %+v, %v", i, err)
	}
	if s, err := f.Strategy(context.Background(), "pi4", "", false); err != nil || s.Name() != "native" {
		t.Errorf("board strategy = %v, %v", s, err)
	}
	if _, err := f.Describe("nosuch"); err == nil || !strings.Contains(err.Error(), "farm-pi4") || !strings.Contains(err.Error(), "pi4") {
		t.Errorf("unknown target: %v", err)
	}
	if f.Batch("x86_64") != nil || f.Batch("pi4") != nil || f.Batch("nosuch") != nil {
		t.Error("an interactive kind answered as a batch kind")
	}
	b := f.Batch("farm-pi4")
	if b == nil {
		t.Fatal("the registered batch kind is not a batch")
	}
	if _, err := f.Acquire(context.Background(), "farm-pi4", ""); !errors.Is(err, ErrBatch) {
		t.Errorf("Acquire on a batch kind: %v", err)
	}
	if l, err := b.RunCell(context.Background(), runner.CellJob{Cell: "farm-pi4/atomic"}); err != nil || l.Ref != "job 1" || len(fm.cells) != 1 {
		t.Errorf("RunCell: %+v %v", l, err)
	}
}

func TestBoardPrebuiltStrategy(t *testing.T) {
	y := strings.Replace(boardsYAML, "arch: arm\n", "arch: arm\n    build: prebuilt\n    prebuilt: /srv/ko\n", 1)
	cfg, err := board.Parse("runners.yaml", []byte(y), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := (&Fleet{Boards: cfg}).Strategy(context.Background(), "pi4", "", false)
	if p, ok := s.(*build.Prebuilt); err != nil || !ok || p.Dir != "/srv/ko" {
		t.Errorf("prebuilt board strategy = %#v, %v", s, err)
	}
}
