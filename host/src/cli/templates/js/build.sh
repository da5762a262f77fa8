#!/usr/bin/env sh
# Builds the component with componentize-js and runs its cases: `./build.sh`
# (needs node >= 20, `npm install` once, and `halyard` on PATH or in $HALYARD).
set -eu
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund
node build.mjs {{kind}}.js {{kind}} {{name}}.wasm wit/plugin.wit
"${HALYARD:-halyard}" plugin test {{name}}.wasm --cases cases.jsonl
