#!/usr/bin/env bash
# Build free-threaded CPython 3.13 (python3.13t, --disable-gil) into a cache
# prefix, for ringmaster's free-threaded worker. Idempotent: an existing build
# that runs without the GIL is kept and nothing is downloaded.
#
#   scripts/build-python-ft.sh            # prints the interpreter's path last
#
# Free-threaded CPython has no Debian package and no PyPI wheel here, so the
# sources come from Debian's own python3.13 source package (the trixie suite),
# fetched through a private apt configuration: /etc/apt and the system's
# package lists stay untouched. The archive address is taken from this
# machine's apt sources, never written into the repository. Only the upstream
# tarball inside the source package is built (Debian's patches are not
# applied):
#   ./configure --disable-gil --enable-shared --prefix=PREFIX LDFLAGS=-Wl,-rpath,PREFIX/lib
#   make -j"$(nproc)" && make install
# About 4 minutes on 2 cores and 340 MB. libgdbm-dev is the only build
# dependency a stock machine lacks; missing ones are installed with apt.
#
# Environment:
#   RINGMASTER_PYTHON_FT_PREFIX  install prefix (default ~/.cache/ringmaster/python3.13t)
#   RINGMASTER_DEBIAN_MIRROR     archive URL, when the apt sources do not name one
set -euo pipefail

PREFIX=${RINGMASTER_PYTHON_FT_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/ringmaster/python3.13t}
PY=$PREFIX/bin/python3.13t

say() { printf 'build-python-ft: %s\n' "$*" >&2; }

if [[ -x $PY ]] && [[ $("$PY" -c 'import sys; print(sys._is_gil_enabled())' 2>/dev/null) == False ]]
then
  say "present: $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
  echo "$PY"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    say "not root and no sudo: cannot install build dependencies"
    exit 1
  fi
fi

# ---------------------------------------------------------------- build deps
DEPS=(build-essential pkg-config dpkg-dev xz-utils libgdbm-dev libssl-dev libffi-dev zlib1g-dev
      libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev
      libexpat1-dev)
missing=()
for pkg in "${DEPS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ $status == ii* ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- mirror
# The Debian archive this machine's apt sources name (scripts/debian-mirror.sh).
MIRROR=$("$(dirname "$0")/debian-mirror.sh") || exit 1

# ---------------------------------------------------------------- sources
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-python-ft.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/parts" "$WORK/src"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$KEYRING] ${MIRROR%/} trixie main" >"$WORK/sources.list"
APT=(apt-get -q
     -o Dir::Etc::SourceList="$WORK/sources.list"
     -o Dir::Etc::SourceParts="$WORK/parts"
     -o Dir::State::Lists="$WORK/lists"
     -o Dir::Cache="$WORK/cache"
     -o Debug::NoLocking=1)
# The private directories are ours, not _apt's: download without the sandbox
# user rather than open them up.
[[ $(id -u) -eq 0 ]] && APT+=(-o APT::Sandbox::User=root)
say "fetching the python3.13 source package (trixie) from $MIRROR"
"${APT[@]}" update >&2
(cd "$WORK/src" && "${APT[@]}" source --download-only python3.13 >&2)
tarball=$(find "$WORK/src" -maxdepth 1 -name 'python3.13_*.orig.tar.*' ! -name '*.asc' | head -n1)
if [[ -z $tarball ]]; then
  say "the source package has no upstream tarball (python3.13_*.orig.tar.*)"
  exit 1
fi
say "building $(basename "$tarball") into $PREFIX"
tar -C "$WORK/src" -xf "$tarball"
srcdir=$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'Python-3.13*' | head -n1)
[[ -n $srcdir ]] || { say "unexpected tarball layout"; exit 1; }

# ---------------------------------------------------------------- build
# Into a staging prefix first, renamed at the end: an interrupted build never
# leaves a half-installed interpreter that the check above would trust.
rm -rf "$PREFIX.partial"
mkdir -p "$(dirname "$PREFIX")"
(
  cd "$srcdir"
  ./configure -q --disable-gil --enable-shared --prefix="$PREFIX" \
    LDFLAGS="-Wl,-rpath,$PREFIX/lib" >&2
  make -s -j"$(nproc)" >&2
  make -s install DESTDIR="$PREFIX.partial" >&2
)
rm -rf "$PREFIX"
mv "$PREFIX.partial$PREFIX" "$PREFIX"
rm -rf "$PREFIX.partial"

if [[ $("$PY" -c 'import sys; print(sys._is_gil_enabled())') != False ]]; then
  say "$PY was built but runs with the GIL"
  exit 1
fi
say "built: $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
echo "$PY"
