#!/usr/bin/env bash
# Builds the local base image the end-to-end tests build on, from Debian's busybox-static: no image can be pulled
# here. The root file system is /bin/busybox, a symlink for each applet, /tmp and a minimal /etc/passwd and
# /etc/group. Does nothing when the image already exists; an image of that name made some other way (without
# this script's label) is replaced.
set -euo pipefail

image=${1:-flotilla-test/busybox:latest}
busybox=/bin/busybox
label=io.flotilla.test-base-image

built_here() { [ "$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null)" = busybox-static ]; }

built_here && exit 0
if ! dpkg -S "$busybox" 2>/dev/null | grep -q '^busybox-static:'; then
  echo "error: $busybox is not the static busybox — install it with: apt-get install busybox-static" >&2
  exit 1
fi

lockfile=/tmp/flotilla-base-image.lock
exec 9>"$lockfile"
flock 9
built_here && exit 0

rootfs=$(mktemp -d)
chmod 755 "$rootfs"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp" "$rootfs/var/tmp"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
cp "$busybox" "$rootfs/bin/busybox"
"$busybox" --list-full | while read -r applet; do
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . |
  docker import --change "LABEL $label=busybox-static" --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "built $image" >&2
