#!/usr/bin/env bash
# Builds CPython 3.14 into pyenv's versions folder, the way pyenv builds the
# other interpreters krait is tested on (shared libpython, DWARF kept), so
# that the tests cover PEP 768 attach and 3.14's layouts. Idempotent: a
# build already there is kept.
#
#   bash scripts/python-build.sh            # 3.14.7
#
# The source comes from the Go module proxy, which serves CPython's git
# tags as module zips (github.com/python/cpython@v3.14.7+incompatible);
# `go mod download` checks it against the Go checksum database and against
# the hash pinned below.
set -euo pipefail

version="${KRAIT_PY314_VERSION:-3.14.7}"
want_sum="h1:VAY+1Ox2/E68BOZZvT06dMumxgyvcJLzKZgCkEEZamY="
root="${PYENV_ROOT:-$HOME/.pyenv}"
prefix="$root/versions/$version"

if [ -x "$prefix/bin/python" ] && "$prefix/bin/python" -c 'import ctypes, socket, select, json' 2>/dev/null; then
  echo "python-build: $prefix is there"
  exit 0
fi

# Build dependencies: a compiler, and libffi for ctypes (krait's agent
# needs it); zlib so ensurepip works.
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
dpkg -s libffi-dev >/dev/null 2>&1 || need+=(libffi-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "python-build: fetching CPython $version source through the Go module proxy"
info="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/python/cpython@v$version+incompatible")"
src="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
sum="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')"
if [ "$version" = 3.14.7 ] && [ "$sum" != "$want_sum" ]; then
  echo "python-build: source hash $sum, want $want_sum" >&2
  exit 1
fi
if [ -z "$src" ] || [ ! -f "$src/configure" ]; then
  echo "python-build: no source tree from go mod download: $info" >&2
  exit 1
fi
# Module zips keep no file modes: copy, then make the scripts executable.
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
chmod +x configure config.guess config.sub install-sh
find . -name '*.sh' -exec chmod +x {} +
echo "python-build: building into $prefix (a few minutes)"
./configure --prefix="$prefix" --enable-shared LDFLAGS="-Wl,-rpath,$prefix/lib" >"$work/configure.log" 2>&1 ||
  { tail -30 "$work/configure.log" >&2; exit 1; }
make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
make install >"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
ln -sf "python${version%.*}" "$prefix/bin/python"
ln -sf "pip${version%.*}" "$prefix/bin/pip"
"$prefix/bin/python" -c 'import ctypes, socket, select, json, sys; print("python-build:", sys.version.split()[0], "ready")'
