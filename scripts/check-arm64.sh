#!/usr/bin/env bash
# Runs the packed linux-arm64 library on this x86-64 machine under qemu-user: Bun's own arm64
# build (npm: @oven/bun-linux-aarch64, pinned) `bun add`s the lanes and @lanes/linux-arm64-gnu
# tarballs into a fresh project and runs examples/quickstart.ts; prints its line, which must
# match the x86-64 run's.
#   apt-get install qemu-user libc6-arm64-cross && bun scripts/pack.ts && bash scripts/check-arm64.sh [dist]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="$(cd "${1:-$root/dist}" && pwd)"
bun_version="$("$root/node_modules/.bin/bun" --version)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@oven/bun-linux-aarch64@$bun_version" >/dev/null && tar xzf oven-bun-linux-aarch64-*.tgz)
arm_bun=(qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/package/bin/bun")
mkdir "$work/app"
cat > "$work/app/package.json" <<JSON
{ "name": "app", "private": true, "overrides": { "@lanes/linux-arm64-gnu": "file:$dist/lanes-linux-arm64-gnu-0.1.0.tgz" } }
JSON
cp "$root/examples/quickstart.ts" "$work/app/index.ts"
cd "$work/app"
"${arm_bun[@]}" add "$dist/lanes-0.1.0.tgz" >/dev/null 2>&1
echo "arm64 (qemu): $("${arm_bun[@]}" -e 'import { libraryPath } from "lanes"; console.log(libraryPath().replace(process.cwd() + "/", ""))')"
echo "arm64 (qemu): $("${arm_bun[@]}" index.ts)"
echo "x86-64:       $(cd "$root" && node_modules/.bin/bun examples/quickstart.ts)"
