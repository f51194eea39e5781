#!/usr/bin/env bash
# Installs what kmodlab needs on a Debian 12 or Ubuntu 24.04 host, only what is missing.
# Uses sudo when not root. Guest packages (kernels, headers, busybox, dropbear) are NOT
# installed here: kmodlab fetches them itself into its cache through a private apt root.
set -euo pipefail

#
#   scripts/setup-host.sh          install what is missing
#   scripts/setup-host.sh --list   print the packages it would check, one a line
recipes=("$(dirname "$0")"/../images/recipes/*.yaml)

# dwarves: pahole, which the kbuild of newer amd64 kernels (trixie 6.12, sid) runs for BTF.
# libssl-dev, ccache: the kernel lines the lab builds from source (certs/ tools; reuse).
pkgs=(gcc make libc6-dev libelf-dev bc flex bison kmod cpio xz-utils dpkg apt debian-archive-keyring
      ca-certificates openssh-client dwarves libssl-dev ccache)
# Each target's QEMU and cross compiler are its recipe's (qemu.package,
# module_build.cross_package), as is its Debian architecture (deb_arch): a new target
# needs no edit here. kmodlab checks both fields when it reads a recipe.
mapfile -t -O ${#pkgs[@]} pkgs < <(sed -n 's/^  \(package\|cross_package\): *\([a-z0-9.+-]*\).*/\2/p' "${recipes[@]}" | sort -u)
mapfile -t archs < <(sed -n 's/^deb_arch: *\([a-z0-9]*\).*/\1/p' "${recipes[@]}" | sort -u)
if [ "${1:-}" = --list ]; then
	printf '%s\n' "${pkgs[@]}" | sort -u
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "setup: not root and no sudo: install ${pkgs[*]} by hand" >&2; exit 1; }
	SUDO="sudo"
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Foreign architectures: kmodlab's private apt root does not need them, but tools that
# look at the host's apt (and apt-get download by hand) do.
native=$(dpkg --print-architecture)
for a in "${archs[@]}"; do
	[ "$a" = "$native" ] && continue
	dpkg --print-foreign-architectures | grep -qx "$a" || { $SUDO dpkg --add-architecture "$a"; missing+=(); }
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	# A mirror that serves one index badly must not stop the install of the rest.
	$SUDO apt-get update -q || echo "setup: apt-get update reported errors; going on" >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The one Go version kmodlab needs is go.mod's go line (actions/setup-go reads the same).
want=$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' "$(dirname "$0")/../go.mod")
if ! command -v go >/dev/null; then
	for d in /usr/local/go/bin /usr/lib/go/bin; do [ -x "$d/go" ] && export PATH="$d:$PATH"; done
fi
command -v go >/dev/null || { echo "setup: Go $want or newer is needed (https://go.dev/doc/install)" >&2; exit 1; }
v=$(go env GOVERSION | sed 's/^go//')
# sort -V puts the older first: older than go.mod's line is too old.
if [ "$(printf '%s\n%s\n' "$want" "$v" | sort -V | head -1)" != "$want" ]; then
	echo "setup: Go $v is too old: kmodlab needs $want or newer (go.mod); Debian's golang-go is not enough" >&2
	exit 1
fi
echo "setup: host ready (go $v, $(qemu-system-arm --version | head -1))"
