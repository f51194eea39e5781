package verdict

import "testing"

func TestDecideBuild(t *testing.T) {
	first := "rapiddisk.c:815: implicit declaration of function 'blk_queue_logical_block_size'"
	for _, tc := range []struct {
		name    string
		b       BuildFailure
		want    Expectation
		verdict Verdict
		met     bool
		reason  string
	}{
		{"the job's module: a finding", BuildFailure{Piece: PieceModule, Name: "rapiddisk", First: first}, ExpectClean,
			BuildFailed, false, "module rapiddisk does not build: " + first},
		{"expected", BuildFailure{Piece: PieceModule, Name: "rapiddisk", First: first}, ExpectBuildFails,
			BuildFailed, true, "module rapiddisk does not build: " + first},
		{"the job's binary", BuildFailure{Piece: PieceBinary, Name: "mytool", First: "cmd/mytool/main.go:12: undefined: x"}, ExpectReproduces,
			BuildFailed, false, "binary mytool does not build: cmd/mytool/main.go:12: undefined: x"},
		{"strict warnings", BuildFailure{Piece: PieceModule, Name: "m", First: "m.c:4: no previous prototype for 'f'", Strict: true, Warnings: 2}, ExpectClean,
			BuildFailed, false, "module m: 2 W=1 warnings with strict builds, the first: m.c:4: no previous prototype for 'f'"},
		{"headers: the lab's", BuildFailure{Piece: PieceHeaders, First: "pinned version 6.1.176-1 is no longer served"}, ExpectBuildFails,
			Infra, false, "kernel headers: pinned version 6.1.176-1 is no longer served"},
		{"agent: the lab's", BuildFailure{Piece: PieceAgent, First: "go build: exit 1"}, ExpectClean, Infra, false, "kernel-log agent: go build: exit 1"},
		{"toolchain: the lab's", BuildFailure{Piece: PieceToolchain, First: "arm-linux-gnueabihf-gcc not found"}, ExpectClean,
			Infra, false, "toolchain: arm-linux-gnueabihf-gcc not found"},
	} {
		d := DecideBuild(tc.b, tc.want)
		if d.Verdict != tc.verdict || d.Met != tc.met || len(d.Reasons) != 1 || d.Reasons[0] != tc.reason {
			t.Errorf("%s: %s met=%v %q, want %s met=%v %q", tc.name, d.Verdict, d.Met, d.Reasons, tc.verdict, tc.met, tc.reason)
		}
	}
	// A cell that builds and runs meets no build-fails expectation, whatever it shows.
	for _, v := range []Verdict{Clean, Reproduced, Crashed, Infra} {
		if Meets(Decision{Verdict: v, Attributed: true}, ExpectBuildFails) {
			t.Errorf("%s meets build-fails", v)
		}
	}
	if !Meets(Decision{Verdict: BuildFailed}, ExpectBuildFails) || Meets(Decision{Verdict: BuildFailed}, ExpectClean) {
		t.Error("BUILD-FAILED meets build-fails and nothing else")
	}
	// Repeats: a build failure outranks a crash in a tie, the lab's INFRA outranks it.
	if s := Aggregate([]Decision{{Verdict: BuildFailed}, {Verdict: Crashed}}, 0); s.Verdict != BuildFailed {
		t.Errorf("tie: %s", s.Verdict)
	}
	if s := Aggregate([]Decision{{Verdict: BuildFailed}, {Verdict: Infra}}, 0); s.Verdict != Infra {
		t.Errorf("tie: %s", s.Verdict)
	}
}
