#!/usr/bin/env bash
# The composite action's (action.yml) lab step, on the runner itself (no container):
#
#   ci-action.sh run      run the job's selected cells (INPUT_TARGETS, INPUT_CELLS) in one go
#   ci-action.sh plan     print the shards (GITHUB_OUTPUT shards=...) for a matrix
#   ci-action.sh shard    run one shard: INPUT_SHARD is the matrix entry (JSON: name, args)
#   ci-action.sh merge    merge INPUT_RESULTS/*/ against INPUT_PLAN (JSON) into INPUT_OUT
#   ci-action.sh sweep    compile-only: the job's modules against every kernel headers package (INPUT_TARGETS)
#
# Inputs come as INPUT_* environment variables (action.yml maps its inputs), the kmodlab
# binary as $KMODLAB. Reports go to INPUT_OUT (default results/kmodlab-$GITHUB_RUN_ID);
# the exit code is kmodlab's: 0 as expected, 1 a cell missed, 2 infrastructure.
set -euo pipefail
mode=${1:?usage: ci-action.sh run|plan|shard|merge|sweep}
k=${KMODLAB:?KMODLAB: path of the kmodlab binary}
job=${INPUT_JOB:?input job is required}
out=${INPUT_OUT:-results/kmodlab-${GITHUB_RUN_ID:-local}}
: "${GITHUB_OUTPUT:=/dev/null}"
if [ -n "${INPUT_APT_SOURCES:-}" ]; then
	export KMODLAB_APT_SOURCES="$INPUT_APT_SOURCES"
fi

sel=()
IFS=, read -ra t <<< "${INPUT_TARGETS:-}"; for x in "${t[@]}"; do [ -z "$x" ] || sel+=(--cell "$x"); done
IFS=, read -ra c <<< "${INPUT_CELLS:-}"; for x in "${c[@]}"; do [ -z "$x" ] || sel+=(--cell "$x"); done
read -ra extra <<< "${INPUT_ARGS:-}"

case "$mode" in
plan)
	shards=$("$k" plan "$job" --by "${INPUT_BY:-target}" "${sel[@]}")
	echo "shards=$shards" >> "$GITHUB_OUTPUT"
	echo "$shards"
	;;
run | shard)
	if [ "$mode" = shard ]; then
		[ -n "${INPUT_SHARD:-}" ] || { echo "ci-action: mode shard needs input shard (toJSON(matrix.shard))" >&2; exit 2; }
		# The shard's arguments, one array element each: NUL-separated, so an argument
		# holding a newline stays one argument; a control character in one (kmodlab
		# plan never writes one) is refused, as is a name that is not a plain word.
		jq -e '(.args | type) == "array" and all(.args[]; type == "string" and (test("[[:cntrl:]]") | not))' <<< "$INPUT_SHARD" > /dev/null ||
			{ echo "ci-action: input shard: args must be strings without control characters: $INPUT_SHARD" >&2; exit 2; }
		mapfile -d '' -t sel < <(jq -j '.args[] | ., "\u0000"' <<< "$INPUT_SHARD")
		if [ -z "${INPUT_OUT:-}" ]; then
			name=$(jq -r .name <<< "$INPUT_SHARD")
			[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._@+=:%-]*$ && $name != *..* ]] ||
				{ echo "ci-action: input shard: name $name is not a plain name" >&2; exit 2; }
			out="results/$name"
		fi
	fi
	echo "results=$out" >> "$GITHUB_OUTPUT"
	rc=0
	"$k" run "$job" --out "$out" "${sel[@]}" "${extra[@]}" || rc=$?
	echo "exit-code=$rc" >> "$GITHUB_OUTPUT"
	exit $rc
	;;
merge)
	[ -n "${INPUT_PLAN:-}" ] || { echo "ci-action: mode merge needs input plan (the plan step's shards output)" >&2; exit 2; }
	plan=$(mktemp)
	trap 'rm -f "$plan"' EXIT
	printf '%s\n' "$INPUT_PLAN" > "$plan"
	# One directory per planned shard, as actions/download-artifact lays them out
	# (RESULTS/<prefix><shard name>): a shard that uploaded nothing is named in the error.
	jq -e 'type == "array" and all(.[]; (.name | type) == "string" and (.name | test("^[A-Za-z0-9][A-Za-z0-9._@+=:%-]*$")) and (.name | contains("..") | not))' "$plan" > /dev/null ||
		{ echo "ci-action: input plan: every shard needs a plain name (kmodlab plan's output)" >&2; exit 2; }
	mapfile -d '' -t dirs < <(jq -j --arg p "${INPUT_RESULTS:-shards}/${INPUT_ARTIFACT_PREFIX:-kmodlab-shard-}" '.[].name | $p + ., "\u0000"' "$plan")
	echo "results=$out" >> "$GITHUB_OUTPUT"
	rc=0
	"$k" merge --plan "$plan" --out "$out" "${dirs[@]}" || rc=$?
	echo "exit-code=$rc" >> "$GITHUB_OUTPUT"
	exit $rc
	;;
sweep)
	tg=()
	IFS=, read -ra t <<< "${INPUT_TARGETS:-}"; for x in "${t[@]}"; do [ -z "$x" ] || tg+=(--target "$x"); done
	echo "results=$out" >> "$GITHUB_OUTPUT"
	rc=0
	"$k" build sweep "$job" --out "$out" "${tg[@]}" "${extra[@]}" || rc=$?
	echo "exit-code=$rc" >> "$GITHUB_OUTPUT"
	exit $rc
	;;
*)
	echo "ci-action: mode $mode: want run, plan, shard, merge or sweep" >&2
	exit 2
	;;
esac
