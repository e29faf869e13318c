#!/usr/bin/env bash
# Make the Docker base image local/bookworm (Debian bookworm, minbase) with
# debootstrap + `docker import`: no registry is reachable here, so the image
# the Dockerfile starts FROM is built from the Debian archive this machine's
# own apt sources name. Skipped when the image already exists (a cache).
#   tests/deploy/base-image.sh [IMAGE]   (default local/bookworm)
set -euo pipefail
image=${1:-local/bookworm}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base-image: $image exists"
  exit 0
fi

# The first Debian archive in the apt sources: one-line "deb URL suite ..." or
# deb822 "URIs: URL" (security and third-party archives are skipped).
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources 2>/dev/null |
         awk '/^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }
              /^URIs:/ { print $2 }' |
         grep -v -e security -e '^$' | grep -m1 '/debian/\?$' || true)
if [[ -z $mirror ]]; then
  echo "base-image: no Debian archive found in /etc/apt/sources.list*" >&2
  exit 1
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/rm-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"
# Smaller and quieter images: no apt caches, no recommends.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/99norecommends"
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
echo "base-image: $image imported"
