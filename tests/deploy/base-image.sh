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

mirror=$("$(dirname "$0")/../../scripts/debian-mirror.sh")

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/rm-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"
# Trimmed the way Debian's own -slim images are: no apt caches, no recommends,
# and dpkg leaves out documentation, manuals and translations from now on.
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/locale/*
printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/99norecommends"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/99slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
echo "base-image: $image imported"
