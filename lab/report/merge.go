package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

// Shard is one shard's results as read from its directory.
type Shard struct {
	Dir string
	Run *Run
}

// ReadShard reads DIR/results.json (or a results.json named directly) with ParseShard.
func ReadShard(path string) (*Shard, error) {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, "results.json")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no results.json (did the shard run, and was its results directory uploaded?)", path)
		}
		return nil, err
	}
	r, err := ParseShard(file, data)
	if err != nil {
		return nil, err
	}
	return &Shard{Dir: path, Run: r}, nil
}

// ParseShard reads a shard's results.json and validates it (Validate): a shard is
// outside input. Errors name file.
func ParseShard(file string, data []byte) (*Run, error) {
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := r.Validate(file); err != nil {
		return nil, err
	}
	return &r, nil
}

// MergeError lists every problem found while merging, one per line.
type MergeError struct{ Problems []string }

func (e *MergeError) Error() string {
	return fmt.Sprintf("merge: %d problem(s):\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Merge combines shard runs into one run. want lists every cell ID the plan scheduled,
// in job order (the merged run keeps that order); nil skips the plan check. A planned
// cell that no shard reports, a cell two shards report, a cell outside the plan and
// shards of different jobs are errors naming the cells and directories. Cells are
// carried over as they are.
func Merge(want []string, shards []*Shard) (*Run, error) {
	if len(shards) == 0 {
		return nil, &MergeError{Problems: []string{"no shard results given"}}
	}
	var problems []string
	from := map[string]string{} // cell -> dir
	cells := map[string]*Cell{}
	var order []string
	first := shards[0].Run
	out := &Run{Job: first.Job, JobFile: first.JobFile, Keys: first.Keys, Version: first.Version}
	var end time.Time
	for _, s := range shards {
		r := s.Run
		if r.Job != first.Job {
			problems = append(problems, fmt.Sprintf("%s is job %q, %s is job %q: shards of different jobs", s.Dir, r.Job, shards[0].Dir, first.Job))
			continue
		}
		if out.Started.IsZero() || (!r.Started.IsZero() && r.Started.Before(out.Started)) {
			out.Started = r.Started
		}
		if e := r.Started.Add(time.Duration(r.Seconds * float64(time.Second))); e.After(end) {
			end = e
		}
		if r.Version != out.Version && !strings.Contains(out.Version, r.Version) {
			out.Version += "+" + r.Version
		}
		for _, c := range r.Cells {
			if d, dup := from[c.ID]; dup {
				problems = append(problems, fmt.Sprintf("cell %s is reported by two shards: %s and %s", c.ID, d, s.Dir))
				continue
			}
			from[c.ID] = s.Dir
			cells[c.ID] = c
			order = append(order, c.ID)
		}
	}
	if want != nil {
		planned := map[string]bool{}
		var dirs []string
		for _, s := range shards {
			dirs = append(dirs, s.Dir)
		}
		for _, id := range want {
			planned[id] = true
			if cells[id] == nil {
				problems = append(problems, fmt.Sprintf("cell %s is in the plan but in no shard's results (read %s)", id, strings.Join(dirs, ", ")))
			}
		}
		for _, id := range order {
			if !planned[id] {
				problems = append(problems, fmt.Sprintf("cell %s (from %s) is not in the plan", id, from[id]))
			}
		}
		order = want
	}
	if len(problems) > 0 {
		return nil, &MergeError{Problems: problems}
	}
	seenT := map[string]bool{}
	for _, id := range order {
		c := cells[id]
		out.Cells = append(out.Cells, c)
		if !seenT[c.Target] {
			seenT[c.Target] = true
			out.Targets = append(out.Targets, c.Target)
		}
	}
	if !end.IsZero() {
		out.Seconds = end.Sub(out.Started).Seconds()
	}
	out.ExitCode = out.Code()
	return out, nil
}

// Annotations are GitHub workflow commands (`::error …`), one per cell that missed its
// expectation or could not be judged, anchored at the job file.
func (r *Run) Annotations() []string {
	var out []string
	file := ""
	if r.JobFile != "" && !filepath.IsAbs(r.JobFile) {
		file = "file=" + escapeProperty(filepath.ToSlash(filepath.Clean(r.JobFile))) + ","
	}
	for _, c := range r.Cells {
		where, kind := file, "error"
		if c.CrashSource != nil {
			// A crash placed at a source line is annotated there, as a notice when
			// the job expected it.
			where = "file=" + escapeProperty(c.CrashSource.File) + ",line=" + fmt.Sprint(c.CrashSource.Line) + ","
			if c.Met {
				kind = "notice"
			}
		} else if c.BuildSource != nil {
			// A module that does not build is annotated at its first error.
			where = "file=" + escapeProperty(c.BuildSource.File) + ",line=" + fmt.Sprint(c.BuildSource.Line) + ","
			if c.Met {
				kind = "notice"
			}
		} else if c.Met && c.Verdict != verdict.Infra {
			continue
		}
		msg := fmt.Sprintf("%s: %s, expected %s", c.ID, c.Verdict, c.Expect)
		if len(c.Evidence) > 0 {
			msg += "\n" + strings.Join(c.Evidence, "\n")
		}
		if c.Error != "" {
			msg += "\n" + firstLines(c.Error, 6)
		}
		msg += "\nreplay: " + c.Replay
		title := fmt.Sprintf("%s: %s", c.ID, c.Verdict)
		if c.CrashSource != nil {
			msg += "\nat " + c.CrashSource.Frame
		} else if c.BuildSource != nil {
			msg += "\nat " + c.BuildSource.Frame
		}
		out = append(out, "::"+kind+" "+where+"title="+escapeProperty(title)+"::"+escapeData(msg))
	}
	return out
}

// escapeData and escapeProperty follow GitHub's workflow command encoding.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
