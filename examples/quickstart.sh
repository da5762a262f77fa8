#!/usr/bin/env bash
# Halyard quickstart: build the host and the example guests, check each
# guest, then run the sample sensor data through decoder -> validator ->
# privacy -> sampler with `halyard plugin run`, one stage at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
echo "== building the host and the example guests (first build takes a few minutes)"
cargo build --release -p halyard
cargo build --release --target wasm32-wasip2 --manifest-path guests/Cargo.toml \
  --target-dir target/guests
halyard=target/release/halyard
wasm=target/guests/wasm32-wasip2/release
data=examples/data

for guest in sim_source jsonl_decoder range_validator redact_privacy fraction_sampler; do
  echo; echo "== halyard plugin check $wasm/$guest.wasm"
  "$halyard" plugin check "$wasm/$guest.wasm"
done

echo; echo "== sim-source: two polls of 3 simulated readings"
"$halyard" plugin run "$wasm/sim_source.wasm" --polls 2 --config per_poll=3

echo; echo "== jsonl-decoder over $data/sensors.jsonl (one outcome per line; line 4 is malformed)"
"$halyard" plugin run "$wasm/jsonl_decoder.wasm" --input "$data/sensors.jsonl"

echo; echo "== range-validator (temp must be 0..60) over $data/events.jsonl"
"$halyard" plugin run "$wasm/range_validator.wasm" --input "$data/events.jsonl" \
  --config min.temp=0 --config max.temp=60

echo; echo "== redact-privacy: hash 'operator', drop 'email', block sources 'test-*'"
"$halyard" plugin run "$wasm/redact_privacy.wasm" --input "$data/events.jsonl" \
  --config hash_keys=operator --config drop_keys=email --config salt=quickstart \
  --config 'block_sources=test-*'

echo; echo "== fraction-sampler keeping half, decided by event id"
"$halyard" plugin run "$wasm/fraction_sampler.wasm" --input "$data/events.jsonl" \
  --config fraction=0.5
