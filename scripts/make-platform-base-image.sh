#!/usr/bin/env bash
# Builds a busybox base image for another CPU architecture, for the tests of cross-architecture builds: no image
# can be pulled here. Usage: make-platform-base-image.sh <image> <platform> [<debian-arch>]
#   <platform>     what the image's config says it is for, e.g. linux/arm64 or linux/arm/v7
#   <debian-arch>  whose busybox-static goes in (default: the one that runs on <platform>); naming another one
#                  makes an image that lies about its architecture, as the agent's refusal test needs
# busybox-static for that Debian architecture is downloaded with apt-get (after `dpkg --add-architecture`).
# `docker import --platform` leaves the image marked with the engine's own architecture, so the image is
# assembled here as a `docker save` archive whose config names the platform, and `docker load`ed. Does nothing
# when an image of that name made by this script for that platform exists.
set -euo pipefail

image=${1:?usage: make-platform-base-image.sh <image> <platform> [<debian-arch>]}
platform=${2:?usage: make-platform-base-image.sh <image> <platform> [<debian-arch>]}
IFS=/ read -r os arch variant <<<"$platform"
case "$arch${variant:+/$variant}" in
  arm64 | arm64/v8) debian_arch=arm64 ;;
  arm/v7) debian_arch=armhf ;;
  arm/v6 | arm/v5) debian_arch=armel ;;
  386) debian_arch=i386 ;;
  amd64) debian_arch=amd64 ;;
  *) debian_arch= ;;
esac
debian_arch=${3:-$debian_arch}
[ -n "$debian_arch" ] || { echo "error: no Debian architecture runs on $platform — name one as the third argument" >&2; exit 2; }

# shellcheck source=scripts/busybox-rootfs.sh
. "$(dirname "$0")/busybox-rootfs.sh"
label=io.flotilla.test-base-image
stamp="busybox-static:$debian_arch:$platform"
built_here() { [ "$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null)" = "$stamp" ]; }

built_here && exit 0
exec 9>/tmp/flotilla-base-image.lock
flock 9
built_here && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The busybox of that architecture, from Debian's package (the host's own when it is the host's architecture).
if [ "$debian_arch" = "$(dpkg --print-architecture)" ]; then
  require_static_busybox
else
  if ! dpkg --print-foreign-architectures | grep -qx "$debian_arch"; then
    dpkg --add-architecture "$debian_arch"
    apt-get update -qq >/dev/null
  fi
  (cd "$work" && apt-get download -qq "busybox-static:$debian_arch" 2>/dev/null) ||
    { apt-get update -qq >/dev/null && (cd "$work" && apt-get download -qq "busybox-static:$debian_arch"); }
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/package"
  busybox=$work/package/bin/busybox
fi

# The applet list comes from the host's busybox when the foreign one cannot run here (it has the same applets).
rootfs=$work/rootfs
mkdir "$rootfs"
wanted_busybox=$busybox
"$busybox" true 2>/dev/null || busybox=/bin/busybox
make_busybox_rootfs "$rootfs"
cp "$wanted_busybox" "$rootfs/bin/busybox"

archive=$work/archive
mkdir -p "$archive/layer"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$rootfs" -cf "$archive/layer/layer.tar" .
layer_digest=$(sha256sum "$archive/layer/layer.tar" | cut -d' ' -f1)
variant_field=${variant:+\"variant\":\"$variant\",}
config="{\"architecture\":\"$arch\",$variant_field\"os\":\"$os\",\"created\":\"1970-01-01T00:00:00Z\",\
\"config\":{\"Env\":[\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"/bin/sh\"],\"Labels\":{\"$label\":\"$stamp\"}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_digest\"]},\
\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"scripts/make-platform-base-image.sh $platform $debian_arch\"}]}"
config_digest=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
printf '%s' "$config" >"$archive/$config_digest.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer/layer.tar"]}]' "$config_digest" "$image" >"$archive/manifest.json"
tar -C "$archive" -c . | docker load >/dev/null
echo "built $image for $platform from busybox-static:$debian_arch" >&2
