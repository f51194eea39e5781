package job

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// Cell is one target with one choice of matrix values.
type Cell struct {
	ID     string              `json:"id"` // target/value/value… in sorted parameter order
	Target string              `json:"target"`
	Params map[string]string   `json:"params"`
	Expect verdict.Expectation `json:"expect"`
}

// Keys are the matrix parameter names, sorted.
func (j *Job) Keys() []string {
	var k []string
	for key := range j.Matrix {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// Cells expands targets × matrix, in file order of targets and values.
func (j *Job) Cells() []Cell {
	keys := j.Keys()
	combos := []map[string]string{{}}
	for _, k := range keys {
		var next []map[string]string
		for _, c := range combos {
			for _, v := range j.Matrix[k] {
				m := map[string]string{k: v}
				for kk, vv := range c {
					m[kk] = vv
				}
				next = append(next, m)
			}
		}
		combos = next
	}
	var cells []Cell
	for _, t := range j.Targets {
		for _, c := range combos {
			id := t
			for _, k := range keys {
				id += "/" + c[k]
			}
			cells = append(cells, Cell{ID: id, Target: t, Params: c, Expect: j.expectFor(id)})
		}
	}
	return cells
}

// expectFor is the most specific matching pattern's expectation: fewest wildcards
// wins, then the longest pattern, then the first in sorted order.
func (j *Job) expectFor(id string) verdict.Expectation {
	best, bestScore := j.Expect.Default, -1<<30
	pats := make([]string, 0, len(j.Expect.Cells))
	for pat := range j.Expect.Cells {
		pats = append(pats, pat)
	}
	sort.Strings(pats)
	for _, pat := range pats {
		score := len(pat) - 1000*strings.Count(pat, "*") - 1000*strings.Count(pat, "?")
		if ok, _ := path.Match(pat, id); ok && score > bestScore {
			best, bestScore = j.Expect.Cells[pat], score
		}
	}
	return best
}

// Select filters cells by patterns (path.Match on the ID, or a plain prefix).
func Select(cells []Cell, patterns []string) ([]Cell, error) {
	if len(patterns) == 0 {
		return cells, nil
	}
	var out []Cell
	for _, c := range cells {
		for _, p := range patterns {
			ok, err := path.Match(p, c.ID)
			if err != nil {
				return nil, fmt.Errorf("--cell %q: %w", p, err)
			}
			if ok || c.ID == p || strings.HasPrefix(c.ID, strings.TrimSuffix(p, "/")+"/") {
				out = append(out, c)
				break
			}
		}
	}
	if len(out) == 0 {
		var ids []string
		for _, c := range cells {
			ids = append(ids, c.ID)
		}
		return nil, fmt.Errorf("--cell %s matches no cell (cells: %s)", strings.Join(patterns, ","), strings.Join(ids, ", "))
	}
	return out, nil
}
