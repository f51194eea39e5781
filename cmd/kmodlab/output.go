package main

import (
	"io"
	"os"

	"github.com/kmodlab/kmodlab/internal/sanitize"
)

// Every command prints through stdout and stderr: evidence, errors, trace tables and
// step output hold text from guests, boards and shards, and in a GitHub Actions step a
// line of it could otherwise run as a workflow command (internal/sanitize). commands is
// the one way around that, for the lab's own annotations.
var (
	stdout   io.Writer = sanitize.NewWriter(file{func() *os.File { return os.Stdout }})
	stderr   io.Writer = sanitize.NewWriter(file{func() *os.File { return os.Stderr }})
	commands io.Writer = file{func() *os.File { return os.Stdout }}
)

// file writes to whatever *os.File f returns at the time of the write (tests swap
// os.Stdout).
type file struct{ f func() *os.File }

func (w file) Write(p []byte) (int, error) { return w.f().Write(p) }
