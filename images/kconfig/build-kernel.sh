#!/bin/sh
# Builds a kernel for the lab: the caller (images/kernel_built.go) passes
#   SRC       the unpacked kernel source tree
#   OUT       the build directory (make O=), empty or from an earlier try
#   KARCH     ARCH=, and CROSS the CROSS_COMPILE= prefix (empty for the host)
#   BASE      the base .config (the line's Debian config)
#   LSMOD     an lsmod-format list of the modules to keep (everything else is dropped)
#   FRAGMENTS config fragments, merged in order after the base is trimmed
#   TARGETS   the make targets (zImage or bzImage, modules)
#   JOBS      make -j
#   CCACHE    "ccache" to compile through it, or empty
# Steps print a "step NAME" line each, which the caller turns into progress.
set -eu
m() { make -s -C "$SRC" O="$OUT" ARCH="$KARCH" CROSS_COMPILE="$CROSS" CC="${CCACHE:+$CCACHE }${CROSS}gcc" "$@"; }

echo "step config"
mkdir -p "$OUT"
cp "$BASE" "$OUT/.config"
# Debian's config names its signing material; the lab's fragment drops module signing,
# but olddefconfig must not fail before that.
yes '' | m olddefconfig >/dev/null
echo "step trim"
# localmodconfig keeps the listed modules (as modules) and what they need; then every
# remaining module is built in, so the image boots without loading any.
yes '' | m LSMOD="$LSMOD" localmodconfig >/dev/null 2>&1
sed -i 's/=m$/=y/' "$OUT/.config"
echo "step fragments"
# shellcheck disable=SC2086
(cd "$OUT" && ARCH="$KARCH" CROSS_COMPILE="$CROSS" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" $FRAGMENTS >/dev/null)
yes '' | m olddefconfig >/dev/null
echo "step build"
# shellcheck disable=SC2086
m -j"$JOBS" $TARGETS
echo "step done"
