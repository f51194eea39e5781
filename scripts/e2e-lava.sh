#!/bin/bash
# Submission end to end against a real lava-server: Debian's lava-server, its
# scheduler and a lava-worker on this machine, two ssh devices that are kmodlab QEMU
# guests (armv7-lpae and x86_64), and `kmodlab run --runners lava.yaml` submitting,
# following and judging cells through the server's XML-RPC API. Opt-in (make e2e-lava):
# it installs packages and starts daemons, as root.
#
#   scripts/e2e-lava.sh [--setup-only] [-- KMODLAB-RUN-ARGS...]
#
# Scenarios, each checked:
#   main      armv7-lpae/atomic REPRODUCED and x86_64/kmap clean (exit 0)
#   token     a wrong token: one clear error, exit 2, no cell run
#   nodevice  a device type with no devices: the submission's error, INFRA, exit 2;
#             a type whose only device is in Maintenance: queued, cancelled after
#             queue_timeout, INFRA
#   cancel    a job cancelled in LAVA in its stress step (lavacli jobs cancel): INFRA
#             with LAVA's Canceled; the next cell on the same device cleans up what
#             it left (module, daemon) and is judged as expected (not INFRA)
# E2E_LAVA_SCENARIOS picks some ("main cancel"). Idempotent: what exists is reused, and
# what is not running is started. --setup-only installs and starts the server and
# configures it, and boots no guest. Exit 0 with a SKIP line when lava-server cannot be
# installed; 1 when a scenario failed.
set -eu
. "$(dirname "$0")/lava-ssh-device.sh"
# LAVA's tools are Debian's Python programs: a python3 earlier in PATH (pyenv, a venv)
# lacks their modules. kmodlab keeps the caller's PATH (go, the cross compilers).
userpath=$PATH
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
setup_only=
if [ "${1:-}" = "--setup-only" ]; then setup_only=1; shift; fi
[ "${1:-}" = "--" ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
kmodlab=${KMODLAB:-$root/bin/kmodlab}
case $kmodlab in /*) ;; */*) kmodlab=$PWD/$kmodlab ;; *) kmodlab=$(command -v "$kmodlab") ;; esac
scenarios=${E2E_LAVA_SCENARIOS:-main token nodevice cancel}
url=http://127.0.0.1:8000
state=/var/lib/lava-server/kmodlab-e2e # the token and the daemons' pids
user=kmodlab
say() { echo "e2e-lava: $*"; }
skip() { say "SKIP: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "needs root (it installs lava-server and starts its daemons)"
if ! dpkg -s lava-server lava-dispatcher lavacli >/dev/null 2>&1; then
	say "installing lava-server lava-dispatcher lavacli"
	DEBIAN_FRONTEND=noninteractive apt-get install -y lava-server lava-dispatcher lavacli > /tmp/kmodlab-e2e-lava-apt.log 2>&1 ||
		skip "apt-get install lava-server lava-dispatcher lavacli failed: $(tail -1 /tmp/kmodlab-e2e-lava-apt.log)"
fi
mkdir -p "$state"

# alive PIDFILE: the daemon it names runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# closefds: close every descriptor above 2 in this (sub)shell. The server's daemons
# outlive the script; started under `flock LOCK make e2e-lava` they would otherwise keep
# the lock's descriptor open and hold the lock until they stop.
closefds() {
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
	done
	return 0
}
# daemon NAME CMD...: start CMD in its own session unless NAME's pid is alive.
daemon() {
	name=$1
	shift
	alive "$state/$name.pid" && return 0
	# exec: the pid is the daemon's, and no shell of this script holds its stdout.
	(closefds && cd / && exec setsid "$@" < /dev/null >> "/var/log/lava-server/kmodlab-$name.out" 2>&1) &
	echo $! > "$state/$name.pid"
	say "started $name (pid $(cat "$state/$name.pid"))"
}
manage() { lava-server manage "$@"; }

# The database: without systemd as PID 1 nothing started PostgreSQL, and the package's
# configure step skipped creating LAVA's database; postinst.py does it (idempotent).
cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1, $2}')
[ -n "$cluster" ] || skip "no PostgreSQL cluster (the postgresql package made none)"
# shellcheck disable=SC2086
pg_lsclusters -h | awk 'NR==1 {exit $4 != "online"}' || (closefds && exec pg_ctlcluster $cluster start)
if ! manage users list > /dev/null 2>&1; then
	say "creating LAVA's database"
	python3 /usr/share/lava-server/postinst.py > "$state/postinst.log" 2>&1 ||
		{ say "postinst.py failed:"; tail -5 "$state/postinst.log"; exit 1; }
fi

# Django's default request limit (2.5 MB) refuses a job whose cell files travel inline
# (userblkd and blkstress are a few MB packed): this lab takes 64 MiB. A lab that keeps
# the default needs artefacts.url (docs/lava.md).
limit=/etc/lava-server/settings.d/50-kmodlab-e2e.yaml
if ! grep -q 67108864 "$limit" 2>/dev/null; then
	echo "DATA_UPLOAD_MAX_MEMORY_SIZE: 67108864" > "$limit"
	if alive "$state/gunicorn.pid"; then
		kill "$(cat "$state/gunicorn.pid")"
		while alive "$state/gunicorn.pid"; do sleep 1; done
	fi
fi
# The web and API server (gunicorn on loopback; no Apache needed for the API) and the
# scheduler. The publisher (event stream) is not needed by anything here.
daemon gunicorn gunicorn3 lava_server.wsgi --log-level INFO --log-file /var/log/lava-server/gunicorn.log \
	-u lavaserver -g lavaserver --worker-class eventlet --workers 2 --bind 127.0.0.1:8000
daemon scheduler lava-server manage lava-scheduler --level INFO --log-file /var/log/lava-server/lava-scheduler.log
i=0
until curl -sf -o /dev/null "$url/api/help/"; do
	i=$((i + 1))
	[ $i -lt 60 ] || { say "lava-server does not answer on $url:"; tail -5 /var/log/lava-server/gunicorn.log; exit 1; }
	sleep 1
done

# A superuser and its API token (made here, kept in $state), the worker, the device
# types: ssh (the guests), qemu (one device, in Maintenance: never takes a job) and
# bcm2711-rpi-4-b (no device at all). No health-check job exists for these types here,
# so the scheduler sends jobs to the devices without one.
manage users details "$user" > /dev/null 2>&1 || manage users add "$user" --superuser --email "$user@localhost" > /dev/null
[ -s "$state/token" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$state/token"
token=$(cat "$state/token")
manage tokens list --user "$user" 2>/dev/null | grep -q "$token" || manage tokens add --user "$user" --secret "$token" > /dev/null
manage workers details kmodlab-worker > /dev/null 2>&1 || manage workers add kmodlab-worker > /dev/null
wtoken=$(manage workers details kmodlab-worker | awk '$1 == "token" {print $3}')
for dt in ssh qemu bcm2711-rpi-4-b; do
	manage device-types details "$dt" > /dev/null 2>&1 || manage device-types add "$dt" > /dev/null
done
devices=/etc/lava-server/dispatcher-config/devices
adddev() { # HOST TYPE TAG HEALTH
	manage devices details "$1" > /dev/null 2>&1 ||
		manage devices add --device-type "$2" --worker kmodlab-worker "$1" > /dev/null
	manage device-tags list | grep -qF "Name: '$3'" || manage device-tags create "$3" "kmodlab e2e" > /dev/null
	manage device-tags add "$1" --tags "$3" > /dev/null
	manage devices update "$1" --health "$4" > /dev/null
}
[ -f "$devices/kmodlab-qemu-offline.jinja2" ] || echo "{% extends 'qemu.jinja2' %}" > "$devices/kmodlab-qemu-offline.jinja2"
adddev kmodlab-qemu-offline qemu kmodlab-offline MAINTENANCE
daemon worker lava-worker --name kmodlab-worker --url "$url/" --token "$wtoken" \
	--worker-dir /var/lib/lava/dispatcher/worker --log-file /var/log/lava-server/kmodlab-worker.log --level INFO
say "lava-server up at $url (user $user, token in $state/token)"
[ -z "$setup_only" ] || exit 0

work=$(mktemp -d /tmp/kmodlab-e2e-lava.XXXXXX)
pids=
cleanup() {
	for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	for t in armv7-lpae x86_64; do # a stale port would point the device at nothing
		[ -f "$devices/kmodlab-$t.jinja2" ] && manage devices update "kmodlab-$t" --health MAINTENANCE > /dev/null 2>&1
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The devices: a fresh kmodlab guest per target, its device dictionary pointing at it
# (the same dictionary e2e-lava-run.sh renders), tagged with the target. The token and
# nodevice scenarios need none, cancel only armv7-lpae.
guests=
case " $scenarios " in *" cancel "*) guests="armv7-lpae" ;; esac
case " $scenarios " in *" main "*) guests="armv7-lpae x86_64" ;; esac
for t in $guests; do
	PATH=$userpath "$kmodlab" boot "$t" --keep > "$work/boot-$t.out" 2> "$work/boot-$t.err" &
	pids="$pids $!"
done
for t in $guests; do
	i=0
	until grep -q '^ssh ' "$work/boot-$t.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 900 ] || { say "the $t guest did not come up:"; cat "$work/boot-$t.err"; exit 1; }
		sleep 1
	done
	line=$(grep '^ssh ' "$work/boot-$t.out")
	port=$(echo "$line" | sed -n 's/.* -p \([0-9]*\) .*/\1/p')
	key=$(echo "$line" | sed -n 's/.* -i \([^ ]*\) .*/\1/p')
	ssh_device_dict "$port" "$key" > "$devices/kmodlab-$t.jinja2"
	adddev "kmodlab-$t" ssh "kmodlab-$t" GOOD
	say "device kmodlab-$t: the $t guest, ssh port $port"
done

entry() { # NAME TYPE TAG IMAGE [EXTRA]
	cat <<ENTRY
  - name: $1
    url: $url
    user: $user
    token_env: LAVA_TOKEN
    device_type: $2
    tags: [$3]
    queue_timeout: ${5:-10m}
    job_timeout: 30m
    boot:
      kernel: lab
      image: $4
      deploy: {to: ssh}
      boot: {method: ssh, connection: ssh, prompts: ["# "]}
ENTRY
}
{
	echo "lava:"
	entry lab-armv7 ssh kmodlab-armv7-lpae armv7-lpae
	entry lab-x86 ssh kmodlab-x86_64 x86_64
	entry lab-none bcm2711-rpi-4-b kmodlab-none armv7-lpae
	entry lab-offline qemu kmodlab-offline armv7-lpae 40s
} > "$work/lava.yaml"

failed=
# run NAME WANT-EXIT ROUTES CELLS... : kmodlab run, its wall time, its cells' verdicts.
run() {
	name=$1 want=$2 routes=$3
	shift 3
	cells=
	for c in "$@"; do cells="$cells --cell $c"; done
	start=$(date +%s.%N)
	set +e
	# shellcheck disable=SC2086
	(cd "$root" && PATH=$userpath LAVA_TOKEN=${tok:-$token} "$kmodlab" run jobs/highmem-coherency.yaml --runners "$work/lava.yaml" \
		$routes $cells --seed 7 --set stress=6s --out "$work/out-$name" ${extra:-}) > "$work/$name.log" 2>&1
	rc=$?
	set -e
	secs=$(echo "$(date +%s.%N) - $start" | bc)
	printf 'e2e-lava: %-9s exit %d (want %d) in %.1f s\n' "$name" "$rc" "$want" "$secs"
	if [ -f "$work/out-$name/results.json" ]; then
		python3 - "$work/out-$name/results.json" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cells"]:
    ev = [e for e in c.get("evidence") or [] if e.startswith(("ran as", "lava", "verdict", "infra"))]
    print("e2e-lava:   %-20s %-10s %s" % (c["id"], c["verdict"], "; ".join(ev)[:300]))
PY
	fi
	[ "$rc" = "$want" ] || { failed="$failed $name"; tail -20 "$work/$name.log"; }
}
# verdict NAME CELL VERDICT [EVIDENCE-WORD]: the cell's verdict in run NAME.
verdict() {
	python3 - "$work/out-$1/results.json" "$2" "$3" "${4:-}" <<'PY' || { failed="$failed $1:$2"; say "  want $2 $3 ${4:-}"; }
import json, sys
f, cell, want, word = sys.argv[1:]
try:
    cells = {c["id"]: c for c in json.load(open(f))["cells"]}
except OSError:
    sys.exit(1)
c = cells.get(cell)
sys.exit(0 if c and c["verdict"] == want and word in json.dumps(c) else 1)
PY
}
routes="--lava armv7-lpae=lab-armv7 --lava x86_64=lab-x86"
for s in $scenarios; do
	case $s in
	main)
		run main 0 "$routes" armv7-lpae/atomic x86_64/kmap
		verdict main armv7-lpae/atomic REPRODUCED "lava job"
		verdict main x86_64/kmap clean "lava job"
		;;
	token)
		tok=not-the-token run token 2 "$routes" armv7-lpae/atomic
		grep -q "token" "$work/token.log" || failed="$failed token:message"
		[ ! -f "$work/out-token/results.json" ] || failed="$failed token:ran-cells"
		grep '^Error\|lava lab' "$work/token.log" | head -2
		;;
	nodevice)
		run nodevice 2 "--lava armv7-lpae=lab-none" armv7-lpae/atomic
		verdict nodevice armv7-lpae/atomic INFRA "No devices"
		run offline 2 "--lava armv7-lpae=lab-offline" armv7-lpae/atomic
		verdict offline armv7-lpae/atomic INFRA "queue_timeout"
		;;
	cancel)
		# Two cells on one device, one at a time: the first is cancelled once it runs.
		(cd "$root" && PATH=$userpath LAVA_TOKEN=$token "$kmodlab" run jobs/highmem-coherency.yaml --runners "$work/lava.yaml" \
			--lava armv7-lpae=lab-armv7 --cell armv7-lpae/atomic --cell armv7-lpae/kmap --seed 7 \
			--set stress=45s --out "$work/out-cancel") > "$work/cancel.log" 2>&1 &
		runpid=$!
		pids="$pids $runpid"
		start=$(date +%s.%N)
		i=0
		until grep -q 'running on kmodlab-armv7-lpae' "$work/cancel.log" || [ $i -gt 900 ]; do
			sleep 1
			i=$((i + 1))
		done
		id=$(sed -n 's/.*submitted: lava job \([0-9]*\).*/\1/p' "$work/cancel.log" | head -1)
		# Cancelled once its first stress step runs: the module is loaded and the daemon
		# up, which LAVA (no reboot on an ssh device) leaves to the next job. The steps
		# run 45 s here, not 6 s: the server sees the job's log late and the worker the
		# cancel late, and with 6 s steps the job had torn down and ended first.
		lavacli="lavacli --uri http://$user:$token@127.0.0.1:8000/RPC2"
		i=0
		until $lavacli jobs logs "$id" 2> /dev/null | grep -q 'KMODLAB-STEP-BEGIN [0-9]* stress' || [ $i -gt 300 ]; do
			sleep 2
			i=$((i + 1))
		done
		$lavacli jobs cancel "$id" && say "cancelled lava job $id in its stress step"
		set +e
		wait $runpid
		rc=$?
		set -e
		secs=$(echo "$(date +%s.%N) - $start" | bc)
		printf 'e2e-lava: %-9s exit %d (want 2) in %.1f s\n' cancel "$rc" "$secs"
		[ "$rc" = 2 ] || { failed="$failed cancel"; tail -20 "$work/cancel.log"; }
		# Whichever cell ran first was cancelled; the other ran after it as its own job on
		# the same device, cleaned up what the cancelled one left (the job's
		# kmodlab-cleanup case) and is judged as the job expects: atomic REPRODUCED, kmap
		# clean, not INFRA.
		python3 - "$work/out-cancel/results.json" "$id" <<'PY' || failed="$failed cancel:cells"
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
job = "lava job %s " % sys.argv[2]
for c in cells:
    ev = [e for e in c.get("evidence") or [] if e.startswith(("ran as", "infra", "verdict", "setup", "an earlier job"))]
    print("e2e-lava:   %-20s %-10s %s" % (c["id"], c["verdict"], "; ".join(ev)[:400]))
gone = [c for c in cells if c["verdict"] == "INFRA" and job in json.dumps(c) and "Canceled" in json.dumps(c)]
rest = [c for c in cells if c not in gone and "ran as lava job" in json.dumps(c)]
want = {"armv7-lpae/atomic": "REPRODUCED", "armv7-lpae/kmap": "clean"}
ok = len(gone) == 1 and len(rest) == 1
if ok and rest[0]["verdict"] != want[rest[0]["id"]]:
    print("e2e-lava:   the cell after the cancelled one is %s, want %s" % (rest[0]["verdict"], want[rest[0]["id"]]))
    ok = False
if ok and not any(e.startswith("an earlier job's leftovers") for e in rest[0].get("evidence") or []):
    print("e2e-lava:   the cell after the cancelled one found no leftovers to clean up")
    ok = False
sys.exit(0 if ok else 1)
PY
		;;
	*) say "unknown scenario $s"; exit 2 ;;
	esac
done
if [ -n "$failed" ]; then
	mkdir -p /tmp/kmodlab-e2e-lava-logs && cp "$work"/*.log /tmp/kmodlab-e2e-lava-logs/
	say "FAILED:$failed (logs in /tmp/kmodlab-e2e-lava-logs)"
	exit 1
fi
say "PASS: $scenarios"
