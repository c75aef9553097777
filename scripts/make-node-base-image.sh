#!/usr/bin/env bash
# Builds a local stand-in for the official node:20 image, for building agent.Dockerfile where no image can be
# pulled (the tests): this host's node binary at /usr/local/bin/node (where the official image has it), the
# shared libraries that node and the project's native modules (libsql, @lydell/node-pty, xxhash) link
# against, found with ldd, busybox-static for /bin/sh, tar and the rest, /etc/os-release, and a minimal
# /etc/passwd and /etc/group. No npm and no compiler: agent.Dockerfile is built on it with
# scripts/build-agent-image.sh --prebuilt-node-modules. Does nothing when an image of that name was already made
# by this script from the same node binary and libraries.
#   usage: scripts/make-node-base-image.sh [image]     (default flotilla-test/node:20)
set -euo pipefail

image=${1:-flotilla-test/node:20}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/busybox-rootfs.sh
. "$(dirname "$0")/busybox-rootfs.sh"
label=io.flotilla.test-base-image

node_bin=$(command -v node) || { echo "error: node is not on PATH" >&2; exit 1; }
node_bin=$(readlink -f "$node_bin")
require_static_busybox

# The ELF files whose libraries the image needs: node, and the native modules built for Linux (the prebuilds of
# other systems that some packages ship make ldd fail, and are skipped).
elf_files() {
  echo "$node_bin"
  [ -d "$root/node_modules" ] && find "$root/node_modules" -name '*.node' -type f -not -path '*/prebuilds/*' -not -path '*/obj.target/*'
}
libraries=$(elf_files | while read -r file; do
  ldd "$file" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p'
done | sort -u)
[ -n "$libraries" ] || { echo "error: ldd found no libraries for $node_bin" >&2; exit 1; }

# The label names what the image was made from, so a new node or a new library makes a new image.
fingerprint=$({ "$node_bin" --version; sha256sum "$node_bin" "$busybox"; echo "$libraries"; } | sha256sum | cut -c1-16)
built_here() { [ "$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null)" = "node-$fingerprint" ]; }

built_here && exit 0
lockfile=/tmp/flotilla-node-base-image.lock
exec 9>"$lockfile"
flock 9
built_here && exit 0

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
make_busybox_rootfs "$rootfs"
mkdir -p "$rootfs/usr/local/bin"
cp "$node_bin" "$rootfs/usr/local/bin/node"
# Each library at the path ldd printed (the dynamic loader looks there), as a file rather than a symlink.
echo "$libraries" | while read -r library; do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done
[ -f /etc/os-release ] && cp -L /etc/os-release "$rootfs/etc/os-release"

tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . |
  docker import \
    --change "LABEL $label=node-$fingerprint" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    - "$image" >/dev/null
echo "built $image (node $("$node_bin" --version))" >&2
