#!/bin/sh
# A real LAVA dispatcher runs the LAVA jobs kmodlab renders: lava-run (Debian's
# lava-dispatcher) on an ssh device that is a kmodlab QEMU guest, and kmodlab judges
# the logs lava-run wrote, through the same pipeline as a QEMU cell.
#
#   scripts/e2e-lava-run.sh TARGET CELL... [-- KMODLAB-RUN-ARGS...]
#   scripts/e2e-lava-run.sh armv7-lpae armv7-lpae/atomic armv7-lpae/kmap -- --set stress=6s
#
# Needs lava-run (apt-get install lava-dispatcher) and the ssh device-type template
# (lava-server's; taken from the package without installing it when absent), python3
# with jinja2 (a lava-dispatcher dependency). KMODLAB names the binary. Exit status:
# kmodlab run's; 0 with a SKIP line when lava-run is not installed.
set -eu
. "$(dirname "$0")/lava-ssh-device.sh"
target=$1
shift
cells=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	cells="$cells --cell $1"
	shift
done
[ "${1:-}" = "--" ] && shift
kmodlab=${KMODLAB:-kmodlab}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/kmodlab-lava-run.XXXXXX)
bootpid=
cleanup() {
	if [ -n "$bootpid" ]; then
		kill -INT "$bootpid" 2>/dev/null || true
		wait "$bootpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

if ! command -v lava-run >/dev/null; then
	echo "e2e-lava-run: SKIP: lava-run is not installed (apt-get install lava-dispatcher)"
	exit 0
fi
types=/usr/share/lava-server/device-types
if [ ! -f "$types/ssh.jinja2" ]; then
	(cd "$work" && apt-get download lava-server >/dev/null 2>&1 && dpkg-deb -x lava-server_*.deb deb) ||
		{ echo "e2e-lava-run: no ssh device-type template (lava-server's)" >&2; exit 2; }
	types=$work/deb/usr/share/lava-server/device-types
fi

# The device: a fresh kmodlab guest, reached over SSH with the lab's key.
"$kmodlab" boot "$target" --keep > "$work/boot.out" 2> "$work/boot.err" &
bootpid=$!
i=0
until grep -q '^ssh ' "$work/boot.out" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 600 ] || ! kill -0 "$bootpid" 2>/dev/null; then
		echo "e2e-lava-run: the guest did not come up:" >&2
		cat "$work/boot.err" >&2
		exit 2
	fi
	sleep 1
done
line=$(grep '^ssh ' "$work/boot.out")
port=$(echo "$line" | sed -n 's/.* -p \([0-9]*\) .*/\1/p')
key=$(echo "$line" | sed -n 's/.* -i \([^ ]*\) .*/\1/p')
echo "e2e-lava-run: $target up, ssh port $port"

# The device dictionary, rendered by the device-type template as lava-server would.
ssh_device_dict "$port" "$key" > "$work/device.jinja2"
python3 - "$work" "$types" <<'PY'
import sys, jinja2
work, types = sys.argv[1], sys.argv[2]
env = jinja2.Environment(loader=jinja2.FileSystemLoader([work, types]), trim_blocks=True, autoescape=False)
open(work + "/device.yaml", "w").write(env.get_template("device.jinja2").render())
PY

cat > "$work/runners.yaml" <<RUNNERS
lava:
  - name: lava-$target
    device_type: ssh
    dispatcher: $work/device.yaml
    boot: {kernel: lab, image: $target}
RUNNERS
cd "$root"
# shellcheck disable=SC2086
"$kmodlab" run jobs/highmem-coherency.yaml --runners "$work/runners.yaml" --lava "$target=lava-$target" $cells "$@"
