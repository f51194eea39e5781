#!/bin/sh
# Stream files from an ext4 filesystem on a loop device through /dev/sumdev and compare
# with the sum userspace computes; write a stress report (JSON with "mismatches").
# Usage: check.sh MOUNTPOINT ROUNDS REPORT
set -eu
mnt=$1 rounds=$2 report=$3
checks=0 bad=0 first=""
i=0
while [ "$i" -lt "$rounds" ]; do
	f=$mnt/data-$i
	dd if=/dev/urandom of="$f" bs=4096 count=4 2>/dev/null
	sync
	echo 3 > /proc/sys/vm/drop_caches
	want=$(od -An -tu1 -v "$f" | awk '{for (k = 1; k <= NF; k++) s += $k} END {printf "bytes=%d sum=%d\n", NR ? 16384 : 0, s % 4294967296}')
	got=$(exec 3<>/dev/sumdev; cat "$f" >&3; cat <&3)
	checks=$((checks + 1))
	if [ "$got" != "$want" ]; then
		bad=$((bad + 1))
		[ -n "$first" ] || first="round $i: sumdev says '$got', userspace '$want'"
	fi
	i=$((i + 1))
done
printf '{"mismatches": %d, "reads": %d, "details": "%s"}\n' "$bad" "$checks" "$first" > "$report"
echo "$checks checks, $bad mismatches"
