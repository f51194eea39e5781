package verdict

import "fmt"

// Built (contract.go) is a compile-only sweep's verdict for a kernel the job's modules
// built for, which meets ExpectBuilds, a sweep cell's expectation when the job does not
// say build-fails for its line.

// Build failure pieces: what did not build or could not be fetched. The job's own
// pieces make a cell BUILD-FAILED (a finding about the job), the lab's INFRA.
const (
	PieceModule    = "module"           // one of the job's kernel modules (its kbuild dir)
	PieceBinary    = "binary"           // one of the job's Go binaries
	PieceHeaders   = "kernel headers"   // the lab fetching and fixing up the kernel's headers
	PieceToolchain = "toolchain"        // the host's (cross) compiler, or a headers tree kbuild cannot use
	PieceAgent     = "kernel-log agent" // the lab's kmodlab-kmsg
	PieceCanary    = "canary"           // the lab's canary module
	PieceLab       = "lab"              // anything else of the lab's
)

// BuildFailure is a build that failed before the cell could run.
type BuildFailure struct {
	Piece string // one of the Piece constants
	Name  string // the module's or binary's name, for the job's pieces
	// First is the first error at its place ("rapiddisk.c:815: implicit declaration of
	// function 'blk_queue_logical_block_size'"), or the failure's first line.
	First string
	// Strict: the build failed on the module's own W=1 warnings (--strict or the
	// job's build.strict), Warnings of them.
	Strict   bool
	Warnings int
}

// JobPiece says whether the piece is the job's own.
func (b BuildFailure) JobPiece() bool { return b.Piece == PieceModule || b.Piece == PieceBinary }

// DecideBuild is the verdict of a cell whose build failed: BUILD-FAILED when the job's
// own module or binary did not build (a finding, met only by "build-fails"), INFRA
// naming the lab's piece otherwise (the lab could not judge).
func DecideBuild(b BuildFailure, want Expectation) Decision {
	var d Decision
	if !b.JobPiece() {
		d.Verdict = Infra
		d.Reasons = []string{fmt.Sprintf("%s: %s", b.Piece, b.First)}
		return d
	}
	d.Verdict = BuildFailed
	what := fmt.Sprintf("%s %s", b.Piece, b.Name)
	switch {
	case b.Strict:
		d.Reasons = []string{fmt.Sprintf("%s: %d W=1 warnings with strict builds, the first: %s", what, b.Warnings, b.First)}
	default:
		d.Reasons = []string{fmt.Sprintf("%s does not build: %s", what, b.First)}
	}
	d.Met = Meets(d, want)
	return d
}
