# kmodlab: the two commands a newcomer needs are `make repro` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
KMODLAB := bin/kmodlab
JOB ?= jobs/highmem-coherency.yaml
RUNFLAGS ?=
E2E_TIMEOUT ?= 45m
# How long `make fuzz` runs each target; FUZZPARALLEL workers each (the fuzz engine's -parallel);
# FUZZMINIMIZE caps the minimisation of each new input (Go's default, 60s, is spent on every
# one: FuzzFind's 4 KiB console logs then ran 2,872 inputs in 5 minutes instead of ~120,000).
FUZZTIME ?= 60s
FUZZPARALLEL ?= 1
FUZZMINIMIZE ?= 1s

.PHONY: all setup build images kmod repro test unit e2e e2e-lava-run e2e-lava fuzz soak bench vet clean

all: build

setup:
	@scripts/setup-host.sh

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(KMODLAB) ./cmd/kmodlab

images: build
	$(KMODLAB) images build

kmod: images
	$(KMODLAB) build kmod --dir kmod

# Set up the host if needed, build everything, run the main job.
repro: setup kmod
	$(KMODLAB) run $(JOB) $(RUNFLAGS)

# Set up the host if needed, then every test: unit, fuzz seeds, and end to end on real guests.
test: setup vet unit e2e

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/

unit:
	$(GO) test ./...

e2e: build
	$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e/

# kmodlab's rendered LAVA jobs executed by a real lava-run (Debian's lava-dispatcher) on an
# ssh device that is a kmodlab guest, and judged from lava-run's logs (docs/lava.md).
LAVA_CELLS ?= armv7-lpae:armv7-lpae/atomic,armv7-lpae/kmap x86_64:x86_64/kmap
# Without lava-run it is skipped (exit 0), with a line that says so.
e2e-lava-run: build
	@if ! command -v lava-run >/dev/null; then \
		echo "e2e-lava-run: SKIP: lava-run is not installed (apt-get install lava-dispatcher)"; exit 0; fi; \
	for tc in $(LAVA_CELLS); do t=$${tc%%:*}; c=$${tc#*:}; \
		KMODLAB=$(KMODLAB) scripts/e2e-lava-run.sh $$t $${c//,/ } -- --set stress=6s --seed 7 --out results/lava-run-$$t || exit $$?; done

# Opt-in: installs Debian's lava-server, starts it with a worker, and submits cells to
# it (docs/lava.md). Root only; SKIP when lava-server cannot be installed.
e2e-lava: build
	@KMODLAB=$(KMODLAB) scripts/e2e-lava.sh

fuzz:
	$(GO) test ./lab/trace/ -run '^$$' -fuzz FuzzAnalyze -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./lab/observe/ktap/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./lab/job/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./lab/observe/console/ -run '^$$' -fuzz FuzzFind -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./lab/report/ -run '^$$' -fuzz FuzzReadShard -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./lab/machine/board/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./lab/machine/qemu/ -run '^$$' -fuzz FuzzConsoleRead -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)
	$(GO) test ./internal/sanitize/ -run '^$$' -fuzz FuzzCommands -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL)

# userblkfuzz against userblk.ko for a long time on every target (SOAK=10m per cell).
SOAK ?= 10m
soak: build
	$(KMODLAB) run jobs/userblk-fuzz.yaml --set fuzz=$(SOAK) $(RUNFLAGS)

bench: build
	$(KMODLAB) bench boot --baseline
	$(KMODLAB) bench trace
	$(GO) test -run '^$$' -bench . ./lab/trace/ ./lab/observe/console/

clean:
	rm -rf bin results e2e.log
