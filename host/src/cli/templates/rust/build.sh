#!/usr/bin/env sh
# Builds the component and runs its cases: `./build.sh` (needs cargo with
# the wasm32-wasip2 target, and `halyard` on PATH or in $HALYARD).
set -eu
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2
wasm=target/wasm32-wasip2/release/{{crate}}.wasm
"${HALYARD:-halyard}" plugin test "$wasm" --cases cases.jsonl
echo "built $wasm"
