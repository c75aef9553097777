# Sourced by the scripts that make local base images (no image can be pulled here): the root file system they
# share, from Debian's busybox-static.

busybox=/bin/busybox

# Fails unless /bin/busybox is the static one, which runs in an image with no libraries.
require_static_busybox() {
  if ! dpkg -S "$busybox" 2>/dev/null | grep -q '^busybox-static:'; then
    echo "error: $busybox is not the static busybox — install it with: apt-get install busybox-static" >&2
    exit 1
  fi
}

# Fills the directory $1 with /bin/busybox, a symlink for each applet, /tmp and a minimal /etc/passwd and /etc/group.
make_busybox_rootfs() {
  local rootfs=$1
  chmod 755 "$rootfs"
  mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp" "$rootfs/var/tmp"
  chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
  cp "$busybox" "$rootfs/bin/busybox"
  "$busybox" --list-full | while read -r applet; do
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
}
