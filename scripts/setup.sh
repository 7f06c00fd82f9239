#!/usr/bin/env bash
# Installs the pinned toolchain from the registries and builds liblanes.
#   zig 0.17.0 (PyPI `ziglang`, in a venv under ~/.cache/lanes), bun + typescript + bun-types (npm,
#   versions pinned in package.json and package-lock.json)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ZIGLANG_VERSION=0.17.0
venv="${LANES_ZIG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lanes/ziglang-$ZIGLANG_VERSION}"
if ! "$venv/bin/python" -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION"
fi
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
scripts/zig build -Doptimize=ReleaseFast
echo "lanes: built $(ls zig-out/lib/liblanes.*) with zig $(scripts/zig version), bun $(node_modules/.bin/bun --version)"
