#!/usr/bin/env bash
# Builds the local base image the end-to-end tests build on, from Debian's busybox-static: no image can be pulled
# here. The root file system is /bin/busybox, a symlink for each applet, /tmp and a minimal /etc/passwd and
# /etc/group. Does nothing when the image already exists; an image of that name made some other way (without
# this script's label) is replaced.
set -euo pipefail

image=${1:-flotilla-test/busybox:latest}
# shellcheck source=scripts/busybox-rootfs.sh
. "$(dirname "$0")/busybox-rootfs.sh"
label=io.flotilla.test-base-image

built_here() { [ "$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null)" = busybox-static ]; }

built_here && exit 0
require_static_busybox

lockfile=/tmp/flotilla-base-image.lock
exec 9>"$lockfile"
flock 9
built_here && exit 0

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
make_busybox_rootfs "$rootfs"

tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . |
  docker import --change "LABEL $label=busybox-static" --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "built $image" >&2
