#!/usr/bin/env sh
# Builds the component with componentize-py and runs its cases: `./build.sh`
# (needs `pip install -r requirements.txt` once, and `halyard` on PATH or in $HALYARD).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit/plugin.wit -w {{kind}} componentize -p . app -o {{name}}.wasm
"${HALYARD:-halyard}" plugin test {{name}}.wasm --cases cases.jsonl
