#!/usr/bin/env bash
# Print the Debian archive this machine's apt sources name (the first one that
# is not the security archive): deb822 "URIs:" lines in sources.list.d/*.sources,
# or one-line "deb URI suite ..." entries. RINGMASTER_DEBIAN_MIRROR overrides.
# The repository never names a mirror itself. Exits 1 when none is found.
set -euo pipefail

if [[ -n ${RINGMASTER_DEBIAN_MIRROR:-} ]]; then
  echo "$RINGMASTER_DEBIAN_MIRROR"
  exit 0
fi
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] || continue
  uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
        grep -E '^https?://' | grep -v -- '-security' | grep -i debian | head -n1 || true)
  [[ -n $uri ]] && { echo "$uri"; exit 0; }
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f $f ]] || continue
  uri=$(awk '$1 == "deb" || $1 == "deb-src" {
               for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }' "$f" |
        grep -v -- '-security' | grep -i debian | head -n1 || true)
  [[ -n $uri ]] && { echo "$uri"; exit 0; }
done
echo "debian-mirror: no Debian archive in /etc/apt/sources.list*; set RINGMASTER_DEBIAN_MIRROR" >&2
exit 1
