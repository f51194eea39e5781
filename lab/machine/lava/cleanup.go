package lava

import (
	"path"
	"strings"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// A device LAVA does not reboot between jobs (the ssh boot: one running system takes
// job after job) still holds what an earlier cell left when its job ended early
// (cancelled, timed out, the connection lost): its background daemons, stress
// processes, mounts, loaded modules and files. The next cell's insmod would then fail
// ("File exists") and the cell be INFRA, or worse, run beside the old daemon. On such
// a device the rendered job first cleans up, as its own test case (kmodlab-cleanup),
// before the cell's files are unpacked. On a clean device it does nothing.

// Reused is whether the entry's device runs job after job without a reboot.
func Reused(l *Lab) bool {
	m, _ := l.Boot.Boot["method"].(string)
	return m == "ssh" || l.DeviceType == "ssh"
}

// cleaner is the cleanup's shell function, defined after the step driver (it uses
// KL_TMP). kl_cleanup "MODULE..." PATH... stops, in this order:
//
//   - processes running one of the deployed files that are not a background step's
//     (a stress step still running), so a mount they use can go;
//   - mounts of the modules' block devices (source /dev/MODULE…) or filesystems
//     (type MODULE), never /;
//   - the background steps' process groups, as the earlier jobs' steps recorded them
//     in KL_TMP/kmodlab-bg.pids (only entries of this boot whose leader is gone or
//     still the same process), and any process still running a deployed file;
//   - the modules that are loaded (rmmod, retried while their users exit);
//
// and removes the deployed files, the fetched files and the records. TERM first,
// KILL after 5 s; zombies count as gone. Each thing it did is a KMODLAB-CLEANUP line;
// a module that stays loaded is a KMODLAB-CLEANUP-FAILED line and status 1.
const cleaner = `kl_cleanup() {
	kl_mods=$1; shift
	kl_boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
	kl_groups=
	if [ -f "$KL_TMP/kmodlab-bg.pids" ]; then
		while read -r kl_b kl_p kl_t; do
			[ "$kl_b" = "$kl_boot" ] || continue
			if [ -r "/proc/$kl_p/stat" ] && [ "$(cut -d' ' -f22 "/proc/$kl_p/stat")" != "$kl_t" ]; then continue; fi
			kl_groups="$kl_groups $kl_p"
		done < "$KL_TMP/kmodlab-bg.pids"
	fi
	kl_procs() {
		for kl_d in /proc/[0-9]*; do
			kl_st=$(sed 's/.*) //' "$kl_d/stat" 2>/dev/null) || continue
			set -- $kl_st
			[ "$1" != Z ] || continue
			kl_bg=
			for kl_g in $kl_groups; do if [ "$3" = "$kl_g" ]; then kl_bg=1; fi; done
			if [ -n "$kl_bg" ]; then
				if [ "$kl_mode" = bg ]; then echo "${kl_d#/proc/}"; fi
				continue
			fi
			kl_e=$(readlink "$kl_d/exe" 2>/dev/null) || continue
			kl_e=${kl_e% (deleted)}
			for kl_f in $kl_files; do if [ "$kl_e" = "$kl_f" ]; then echo "${kl_d#/proc/}"; break; fi; done
		done
	}
	kl_stop() {
		kl_mode=$1
		kl_ps=$(kl_procs)
		[ -n "$kl_ps" ] || return 0
		for kl_p in $kl_ps; do
			echo "KMODLAB-CLEANUP stopped $(cat "/proc/$kl_p/comm" 2>/dev/null || echo "?") (pid $kl_p)"
			kill -s TERM "$kl_p" 2>/dev/null || true
		done
		for kl_i in 1 2 3 4 5 6 7 8 9 10; do
			[ -n "$(kl_procs)" ] || return 0
			sleep 0.5
		done
		for kl_p in $(kl_procs); do kill -s KILL "$kl_p" 2>/dev/null || true; done
		sleep 0.5
	}
	kl_files="$*"
	kl_stop fg
	for kl_m in $kl_mods; do
		kl_mnts=
		while read -r kl_src kl_mnt kl_fs kl_rest; do
			case "$kl_src" in "/dev/$kl_m"*) ;; *) [ "$kl_fs" = "$kl_m" ] || continue;; esac
			[ "$kl_mnt" != / ] || continue
			kl_mnts="$kl_mnt $kl_mnts"
		done < /proc/mounts
		for kl_mnt in $kl_mnts; do
			if umount "$kl_mnt" 2>/dev/null || umount -l "$kl_mnt" 2>/dev/null; then echo "KMODLAB-CLEANUP unmounted $kl_mnt"; fi
		done
	done
	kl_stop bg
	kl_rc=0
	for kl_m in $kl_mods; do
		[ -d "/sys/module/$kl_m" ] || continue
		for kl_i in 1 2 3 4 5 6 7 8 9 10; do
			rmmod "$kl_m" 2> "$KL_TMP/kmodlab-rmmod" && break
			sleep 0.5
		done
		if [ -d "/sys/module/$kl_m" ]; then
			echo "KMODLAB-CLEANUP-FAILED $kl_m stays loaded: $(tail -n 1 "$KL_TMP/kmodlab-rmmod")"; kl_rc=1
		else
			echo "KMODLAB-CLEANUP unloaded $kl_m"
		fi
	done
	rm -f "$@" "$KL_TMP/kmodlab-bg.pids" "$KL_TMP/kmodlab-rmmod" "$KL_TMP/kmodlab-out" || true
	return $kl_rc
}`

// cleanupSteps are the cleanup's steps for the cell: the function and its call with
// the cell's modules (its .ko files, as /sys/module names them) and the paths the
// cell deploys and fetches.
func cleanupSteps(c runner.CellJob) []any {
	var mods, paths []string
	for _, f := range c.Files {
		paths = append(paths, f.Remote)
		if b := path.Base(f.Remote); strings.HasSuffix(b, ".ko") {
			mods = append(mods, strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_"))
		}
	}
	paths = append(paths, c.Fetch...)
	call := "kl_cleanup " + shQuote(strings.Join(mods, " "))
	for _, p := range paths {
		call += " " + shQuote(p)
	}
	return []any{cleaner, "if " + call + "; then lava-test-case kmodlab-cleanup --result pass; else lava-test-case kmodlab-cleanup --result fail; exit 1; fi"}
}

// readCleanup is what the cleanup did (its KMODLAB-CLEANUP lines) and why it could
// not finish ("" when it did, or did not run).
func readCleanup(recs []Record) (done []string, failed string) {
	targetLines(recs, func(line string) {
		i := strings.Index(line, "KMODLAB-CLEANUP")
		if i < 0 {
			return
		}
		tag, rest, _ := strings.Cut(line[i:], " ")
		switch tag {
		case "KMODLAB-CLEANUP":
			done = append(done, rest)
		case "KMODLAB-CLEANUP-FAILED":
			if failed != "" {
				failed += "; "
			}
			failed += rest
		}
	})
	return done, failed
}
