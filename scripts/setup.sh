#!/usr/bin/env bash
# Installs the pinned toolchain from the registries and builds liblanes.
#   zig 0.17.0 (PyPI `ziglang`, in .zig-venv), bun + typescript + bun-types (npm, package-lock.json)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ZIGLANG_VERSION=0.17.0
if ! .zig-venv/bin/python -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"; then
  python3 -m venv .zig-venv
  .zig-venv/bin/pip install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION"
fi
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
scripts/zig build -Doptimize=ReleaseFast
echo "lanes: built $(ls zig-out/lib/liblanes.*) with zig $(scripts/zig version), bun $(node_modules/.bin/bun --version)"
