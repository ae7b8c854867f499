#!/usr/bin/env bash
# Compiles the shop's processes and the keel CLI to JavaScript in <outDir> (default dist/), with
# the files they read at run time (the shop's SQL migrations), for `node <outDir>/apps/shop/cmd/…`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
rm -rf "$out"
npx tsc -p tsconfig.build.json --outDir "$out"
cp -r apps/shop/migrations "$out/apps/shop/migrations"
