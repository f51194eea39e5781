#!/bin/sh
# The config step of a +lean line (images/kernel_built.go): allnoconfig plus the lean base
# fragment in LEANBASE (images/kconfig/base/lean-ARCH.config) become the BASE that
# build-kernel.sh (BUILD, the same environment otherwise) then trims, merges and builds
# exactly as it does a Debian config. The base has no modules, so trimming keeps it whole.
set -eu
m() { make -s -C "$SRC" O="$OUT" ARCH="$KARCH" CROSS_COMPILE="$CROSS" "$@"; }
echo "step lean base"
mkdir -p "$OUT"
m allnoconfig >/dev/null
(cd "$OUT" && ARCH="$KARCH" CROSS_COMPILE="$CROSS" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "$LEANBASE" >/dev/null)
yes '' | m olddefconfig >/dev/null
BASE="$LEANCONFIG"
cp "$OUT/.config" "$BASE"
export BASE
exec sh "$BUILD"
