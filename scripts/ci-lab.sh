#!/usr/bin/env bash
# The commands the GitHub workflow's lab jobs run inside their debian:bookworm container
# (.github/workflows/kmodlab.yml). e2e/rootfs_test.go runs this same file in a fresh
# bookworm root filesystem, so what the workflow runs is what `make test` tests.
#
#   scripts/ci-lab.sh images                       fill the image cache (every target)
#   scripts/ci-lab.sh run OUT JOB [RUN ARGS...]    build, run JOB's selected cells, reports in OUT
#
# Go is not installed here: Debian bookworm's golang-go (1.19) is older than go.mod's go
# line. The workflow mounts the Go of actions/setup-go (which reads go.mod) at
# $GO_IN_CONTAINER. The image cache is $KMODLAB_CACHE (the workflow's actions/cache path).
# Exit code: kmodlab's (0 as expected, 1 a cell missed, 2 infrastructure); 3 when this
# script could not get as far as running kmodlab.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "ci-lab: $*" >&2; exit 3; }
trap 'rc=$?; [ $rc -eq 0 ] || [ -n "${ran:-}" ] || { echo "ci-lab: failed before kmodlab ran (exit $rc)" >&2; exit 3; }' EXIT

mode=${1:-}
case "$mode" in
images) shift ;;
run)
	[ $# -ge 3 ] || fail "usage: $0 run OUT JOB [kmodlab run args...]"
	out=$2 job=$3
	shift 3
	;;
*) fail "usage: $0 images | run OUT JOB [kmodlab run args...]" ;;
esac

export DEBIAN_FRONTEND=noninteractive
go_root=${GO_IN_CONTAINER:-/usr/local/go}
export PATH="$go_root/bin:$PATH"
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
command -v go >/dev/null || fail "no Go at $go_root/bin: mount actions/setup-go's GOROOT there (go.mod wants go $want)"
echo "ci-lab: $(go version) at $(go env GOROOT); go.mod wants $want"

# What kmodlab needs (scripts/setup-host.sh), and git for the version string.
t0=$SECONDS
scripts/setup-host.sh
if ! command -v git >/dev/null; then
	apt-get install -y -q --no-install-recommends git >/dev/null ||
		{ apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends git >/dev/null; }
fi
echo "ci-lab: host packages ready in $((SECONDS - t0)) s"

# The checkout belongs to the runner's user, not to the container's root.
git config --global --add safe.directory "$PWD"
t0=$SECONDS
make build
echo "ci-lab: kmodlab built in $((SECONDS - t0)) s: $(bin/kmodlab version)"

# Hand what root writes here (the cache, the reports) to the runner's user, who owns
# the checkout and later caches and uploads them: ownership, not modes, so the lab's
# private key and the images' host keys stay 0600 (a chmod -R a+rX made them readable
# by every user of the runner). Only entries not already the runner's are changed.
share() {
	local owner
	owner=$(stat -c %u:%g .) || return 0
	for d in "${KMODLAB_CACHE:-$HOME/.cache/kmodlab}" ${out:+"$out"}; do
		[ -e "$d" ] || continue
		find "$d" \( ! -uid "${owner%:*}" -o ! -gid "${owner#*:}" \) -exec chown -h "$owner" {} + 2>/dev/null || true
	done
}
trap share EXIT
ran=1
case "$mode" in
images)
	bin/kmodlab images build
	;;
run)
	rc=0
	bin/kmodlab run "$job" --out "$out" "$@" || rc=$?
	for f in results.json junit.xml summary.md index.html; do
		[ -s "$out/$f" ] || { echo "ci-lab: $out/$f missing" >&2; [ $rc -ne 0 ] || rc=2; }
	done
	echo "ci-lab: kmodlab run exit $rc, reports in $out"
	exit $rc
	;;
esac
