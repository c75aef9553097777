#!/usr/bin/env bash
# Builds a balenaOS-like disk image for tests and benchmarks, then its compressed forms and a bmap.
# Usage: make-disk-fixture.sh <output.img> [size-MiB (default 256)] [data-MiB to write per root (default 2)]
# Leaves <output.img>, .img.gz, .img.xz, .img.zip, .img.bz2 and .img.bmap beside each other. Needs no root:
# filesystems are made inside the image file at offsets, with mkfs's -E offset / mtools, never mounted.
set -euo pipefail

out=${1:?usage: make-disk-fixture.sh <output.img> [size-MiB] [data-MiB]}
size_mib=${2:-256}
data_mib=${3:-2}
forms=${FIXTURE_FORMS:-gz xz zip bz2}

rm -f "$out"
truncate -s "${size_mib}M" "$out"

# Sizes in MiB: boot 40, two roots, an extended partition holding state (16) and data (the rest).
# Starts are explicit (in 512-byte sectors) so that sfdisk cannot place the extended partition in a gap.
mib=2048
boot_start=$(( 4 * mib )); boot_sectors=$(( 40 * mib ))
root_sectors=$(( (size_mib - 40 - 16 - 12) * 3 / 10 * mib ))
rootA_start=$(( boot_start + boot_sectors ))
rootB_start=$(( rootA_start + root_sectors ))
extended_start=$(( rootB_start + root_sectors ))
state_start=$(( extended_start + mib )); state_sectors=$(( 16 * mib ))
data_start=$(( state_start + state_sectors + mib ))
data_sectors=$(( size_mib * mib - data_start ))
sfdisk --quiet "$out" <<LAYOUT
label: dos
unit: sectors
start=$boot_start, size=$boot_sectors, type=c, bootable
start=$rootA_start, size=$root_sectors, type=83
start=$rootB_start, size=$root_sectors, type=83
start=$extended_start, type=5
start=$state_start, size=$state_sectors, type=83
start=$data_start, size=$data_sectors, type=83
LAYOUT

make_ext4() { # start-sector sectors label
  mkfs.ext4 -q -F -L "$3" -E offset=$(( $1 * 512 )) "$out" $(( $2 / 2 ))k
}

boot_img=$(mktemp)
trap 'rm -f "$boot_img" "$boot_img".*' EXIT
truncate -s $(( boot_sectors * 512 )) "$boot_img"
mkfs.vfat -F 32 -n resin-boot "$boot_img" >/dev/null 2>&1
printf '{"slug":"raspberrypi4-64","version":1,"arch":"aarch64"}\n' > "$boot_img.device-type.json"
printf 'ID="balena-os"\nNAME="balenaOS"\nVERSION_ID="6.0.0"\n' > "$boot_img.os-release"
head -c 300000 /dev/urandom > "$boot_img.kernel"
mcopy -i "$boot_img" "$boot_img.device-type.json" ::device-type.json
mcopy -i "$boot_img" "$boot_img.os-release" ::os-release
mcopy -i "$boot_img" "$boot_img.kernel" ::kernel8.img
mmd -i "$boot_img" ::system-connections
dd if="$boot_img" of="$out" bs=4096 seek=$(( boot_start / 8 )) conv=notrunc,sparse status=none

make_ext4 "$rootA_start" "$root_sectors" resin-rootA
make_ext4 "$rootB_start" "$root_sectors" resin-rootB
make_ext4 "$state_start" "$state_sectors" resin-state
make_ext4 "$data_start" "$data_sectors" resin-data

# A little data in the roots: random bytes, written with debugfs so nothing is mounted.
for start in "$rootA_start" "$rootB_start" "$data_start"; do
  head -c $(( data_mib * 1048576 )) /dev/urandom > "$boot_img.data"
  debugfs -w -R "write $boot_img.data payload.bin" "$out?offset=$(( start * 512 ))" >/dev/null 2>&1 \
    || { echo "debugfs could not write into the partition at sector $start" >&2; exit 1; }
done

bmaptool create -o "${out}.bmap" "$out" >/dev/null 2>&1 || bmaptool create -o "${out}.bmap" "$out"
for form in $forms; do
  case $form in
    gz) gzip -1 -c "$out" > "$out.gz" ;;
    xz) xz -0 -T0 -c "$out" > "$out.xz" ;;
    bz2) bzip2 -1 -c "$out" > "$out.bz2" ;;
    zip) rm -f "$out.zip"; (cd "$(dirname "$out")" && printf 'readme\n' > README.txt && zip -q -1 "$(basename "$out").zip" README.txt "$(basename "$out")" && rm README.txt) ;;
  esac
done
