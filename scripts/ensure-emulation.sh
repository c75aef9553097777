#!/usr/bin/env bash
# Makes sure this machine runs arm64 programs under emulation, as cross-architecture builds and their tests need:
# binfmt_misc mounted, Debian's qemu-user-static interpreters registered (binfmt-support), and an arm64 busybox
# from Debian actually running and saying aarch64. Fails with what to install when it cannot.
set -euo pipefail

binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/status" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null ||
    { echo "error: binfmt_misc is not mounted at $binfmt and cannot be (needs root): mount -t binfmt_misc binfmt_misc $binfmt" >&2; exit 1; }
fi
command -v update-binfmts >/dev/null || { echo "error: update-binfmts is missing — install it with: apt-get install qemu-user-static binfmt-support" >&2; exit 1; }
[ -e "$binfmt/qemu-aarch64" ] || update-binfmts --enable >/dev/null 2>&1 || true
[ -e "$binfmt/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64
[ -e "$binfmt/qemu-aarch64" ] || { echo "error: no qemu-aarch64 in binfmt_misc — install it with: apt-get install qemu-user-static binfmt-support" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq >/dev/null; }
(cd "$work" && apt-get download -qq busybox-static:arm64 2>/dev/null) || { apt-get update -qq >/dev/null && (cd "$work" && apt-get download -qq busybox-static:arm64); }
dpkg-deb -x "$work"/busybox-static_*.deb "$work/x"
machine=$("$work/x/bin/busybox" uname -m)
[ "$machine" = aarch64 ] || { echo "error: an arm64 program ran but said it runs on $machine, not aarch64" >&2; exit 1; }
echo "emulation works: an arm64 busybox says $machine" >&2
