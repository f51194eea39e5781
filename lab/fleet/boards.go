package fleet

import (
	"context"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// boardKind is the provider of the boards of runners.yaml, by name or label.
type boardKind struct{ f *Fleet }

func (boardKind) Kind() runner.Kind { return runner.KindBoard }

func (k boardKind) Owns(name string) bool { return len(k.f.Boards.Match(name)) > 0 }

func (k boardKind) Names() []string {
	var n []string
	for _, b := range k.f.Boards.Boards {
		n = append(n, b.Name)
	}
	return n
}

// Describe describes the board a label would pick now (one not quarantined).
func (k boardKind) Describe(name string) (runner.Info, error) {
	b, err := k.f.Boards.Pick(name)
	if err != nil {
		return runner.Info{}, err
	}
	return b.Info(), nil
}

// Strategy builds natively on the board or takes prebuilt modules, as runners.yaml says.
func (k boardKind) Strategy(ctx context.Context, name, cacheDir string, strict bool) (build.Strategy, error) {
	b, err := k.f.Boards.Pick(name)
	if err != nil {
		return nil, err
	}
	return b.Strategy(), nil
}

// Acquire attaches an idle board of the label (not the first one) and checks the
// job's guest additions on it.
func (k boardKind) Acquire(ctx context.Context, name, consoleLog string) (runner.Runner, error) {
	s, err := k.f.Boards.Attach(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := k.f.checkBoard(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
