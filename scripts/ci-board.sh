#!/usr/bin/env bash
# The workflow's board shards: a self-hosted runner next to a board runs the job's cells
# on the board, and its results go through the same `kmodlab merge` as the QEMU shards.
#
#   scripts/ci-board.sh plan LABEL JOB                prints the board shard(s) as kmodlab plan JSON
#   scripts/ci-board.sh run LABEL JOB OUT [ARGS...]   runners check, then the board's cells, reports in OUT
#
# The board job is JOB with its targets replaced by LABEL (a board name or label in
# runners.yaml). The board inherits the expectations of the QEMU target it stands for,
# $KMODLAB_BOARD_AS (default: JOB's first target; armv7-lpae for a Raspberry Pi 4 on a
# 32-bit OS); the other targets' expectations are dropped. The derived job is written next
# to JOB as .board-LABEL.yaml so replay lines work from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 plan LABEL JOB | run LABEL JOB OUT [kmodlab run args...]" >&2; exit 3; }
[ $# -ge 3 ] || usage
mode=$1 label=$2 job=$3
shift 3
[[ "$label" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "ci-board: label $label: only letters, digits, . _ -" >&2; exit 3; }

targets=$(sed -n 's/^targets: *\[\(.*\)\] *$/\1/p' "$job" | tr -d ' ' | tr , ' ')
[ -n "$targets" ] || { echo "ci-board: $job: no one-line 'targets: [...]'" >&2; exit 3; }
as=${KMODLAB_BOARD_AS:-${targets%% *}}
derived="$(dirname "$job")/.board-$label.yaml"
[ "$mode" != plan ] || trap 'rm -f "$derived"' EXIT
{
	echo "# Derived from $job by scripts/ci-board.sh: targets [$label], expectations of $as."
	sed -e "s|^targets: .*|targets: [$label]|" -e "s|^\([[:space:]]*[\"']\{0,1\}\)$as/|\1$label/|" "$job" |
		grep -Ev "^[[:space:]]*[\"']?($(echo "$targets" | tr ' ' '|'))/"
} > "$derived"

if [ -x bin/kmodlab ] && [ "$mode" = plan ]; then k=bin/kmodlab; else
	export PATH="$PATH:/usr/local/go/bin"
	make build >/dev/null
	k=bin/kmodlab
fi

case "$mode" in
plan)
	"$k" plan "$derived" --by target --kind board
	;;
run)
	[ $# -ge 1 ] || usage
	out=$1
	shift
	# Boards for the label that fail the check are quarantined; the run then uses the
	# others, or reports every cell as an infrastructure error.
	check=0
	mapfile -t boards < <("$k" runners list | awk -v l="$label" '$1 == l || $0 ~ "labels=\\[([^]]* )?" l "( [^]]*)?\\]" {print $1}')
	"$k" runners check "${boards[@]}" || check=$?
	echo "ci-board: runners check exit $check"
	rc=0
	"$k" run "$derived" --out "$out" "$@" || rc=$?
	echo "ci-board: kmodlab run exit $rc, reports in $out"
	exit $rc
	;;
*) usage ;;
esac
