package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/kmodlab/kmodlab/lab/build"
	"github.com/kmodlab/kmodlab/lab/job"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
	"github.com/kmodlab/kmodlab/lab/report"
	"github.com/kmodlab/kmodlab/lab/sweep"
)

// buildError is a build that failed before the target's cells could run, with the
// piece that failed: the job's module or binary (BUILD-FAILED) or the lab's (INFRA).
type buildError struct {
	failure verdict.BuildFailure
	module  *job.Module    // the job's module, for its source line
	bf      *build.Failure // the module's failure, with its log
	binary  string         // the binary's go build output
	err     error
}

func (e *buildError) Error() string { return e.err.Error() }
func (e *buildError) Unwrap() error { return e.err }

// pieceError says which piece err is a failure of: a *build.Failure of a job's module
// is the module's own, any other error of the module's build is the toolchain's.
func moduleError(m job.Module, err error) *buildError {
	var bf *build.Failure
	if errors.As(err, &bf) {
		b := verdict.BuildFailure{Piece: verdict.PieceModule, Name: m.Name, Strict: bf.Strict}
		if bf.Result != nil {
			b.Warnings = len(bf.Result.Warnings())
		}
		switch {
		case bf.First != nil:
			b.First = bf.First.String()
		case bf.Err != nil:
			b.First = bf.Err.Error()
		}
		return &buildError{failure: b, module: &m, bf: bf, err: err}
	}
	return labError(verdict.PieceToolchain, err)
}

func labError(piece string, err error) *buildError {
	return &buildError{failure: verdict.BuildFailure{Piece: piece, First: firstLine(err.Error())}, err: err}
}

// goErrRe is a Go compiler error: "cmd/mytool/main.go:12:2: undefined: x".
var goErrRe = regexp.MustCompile(`(?m)^(?:\./)?(\S+\.go):(\d+)(?::\d+)?: (.+)$`)

// binaryError is a job's Go binary that did not build: always the job's (the lab's Go
// toolchain builds the lab's own agent first).
func binaryError(b job.Binary, err error) *buildError {
	first := firstLine(err.Error())
	if m := goErrRe.FindStringSubmatch(err.Error()); m != nil {
		first = m[1] + ":" + m[2] + ": " + m[3]
	}
	return &buildError{failure: verdict.BuildFailure{Piece: verdict.PieceBinary, Name: b.Name, First: first}, binary: err.Error(), err: err}
}

// buildFailedCell is a cell that could not run because its build failed: BUILD-FAILED
// with the first error at its line and the full log in the cell's logs, or INFRA
// naming the lab's piece.
func (p *targetRun) buildFailedCell(c job.Cell, be *buildError) *report.Cell {
	rc := p.newCell(c)
	os.MkdirAll(rc.LogDir, 0o755)
	d := verdict.DecideBuild(be.failure, c.Expect)
	rc.Verdict, rc.Met, rc.Reasons = d.Verdict, d.Met, d.Reasons
	if d.Verdict == verdict.Infra {
		rc.Error = be.err.Error()
		rc.Evidence = append(rc.Evidence, "infrastructure error: "+d.Reasons[0])
		os.WriteFile(filepath.Join(rc.LogDir, "error.txt"), []byte(rc.Error), 0o644)
		return rc
	}
	if rc.Build == nil {
		rc.Build = &report.Build{}
	}
	rc.Build.FirstError, rc.Build.Module, rc.Build.Warnings = be.failure.First, be.failure.Name, be.failure.Warnings
	rc.Build.Strict = be.failure.Strict
	rc.Evidence = append(rc.Evidence, "build: "+d.Reasons[0])
	j := p.o.Job
	switch {
	case be.bf != nil && be.bf.Result != nil:
		log := filepath.Join(rc.LogDir, "build-"+be.failure.Name+".log")
		os.WriteFile(log, []byte(be.bf.Result.Log), 0o644)
		rc.Build.Logs = []string{log}
		rc.Build.Seconds = be.bf.Result.Seconds
		for _, w := range be.bf.Result.Warnings() {
			if len(rc.Build.List) < 20 {
				rc.Build.List = append(rc.Build.List, w.String())
			}
		}
		rc.Evidence = append(rc.Evidence, "build log: "+log)
		rc.BuildSource = sweep.Source(j, *be.module, be.bf)
	case be.binary != "":
		log := filepath.Join(rc.LogDir, "build-"+be.failure.Name+".log")
		os.WriteFile(log, []byte(be.binary), 0o644)
		rc.Build.Logs = []string{log}
		rc.Evidence = append(rc.Evidence, "build log: "+log)
		if m := goErrRe.FindStringSubmatch(be.binary); m != nil {
			line, _ := strconv.Atoi(m[2])
			rc.BuildSource = &report.Source{File: filepath.ToSlash(strings.TrimPrefix(m[1], "./")), Line: line, Frame: be.failure.First}
		}
	}
	return rc
}

// noteBuild keeps what a module's build said (its W=1 warnings, its time) for every
// cell of the target.
func (p *targetRun) noteBuild(name string, r *build.Result) {
	if r == nil {
		return
	}
	if p.build == nil {
		p.build = &report.Build{}
	}
	p.build.Seconds += r.Seconds
	for _, w := range r.Warnings() {
		p.build.Warnings++
		if len(p.build.List) < 20 {
			p.build.List = append(p.build.List, fmt.Sprintf("%s: %s", name, w.String()))
		}
	}
}
