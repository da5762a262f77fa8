#!/usr/bin/env bash
# Halyard quickstart: build the host and the example guests, start a receiver
# on 127.0.0.1:8080, run the host on examples/quickstart.toml for a while
# (QUICKSTART_SECONDS, default 15; Ctrl-C stops early), then print what the
# receiver stored and what the host rejected.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
echo "== building the host and the example guests (the first build takes a few minutes)"
cargo build --release -p halyard
cargo build --release --target wasm32-wasip2 --manifest-path guests/Cargo.toml \
  --target-dir target/guests
halyard=target/release/halyard
out=target/quickstart
rm -rf "$out" && mkdir -p "$out"

echo; echo "== checking the guests"
for guest in sim_source jsonl_decoder range_validator redact_privacy fraction_sampler; do
  "$halyard" plugin check "target/guests/wasm32-wasip2/release/$guest.wasm" | grep -E "^(name|kind|verdict)" | paste -sd' '
done

export HALYARD_API_KEY=quickstart-key
# The quickstart runs in dev mode: no licence needed, and the host says so in
# its log, /health and every batch ("licence":"dev"). To run under a real
# licence, set HALYARD_DEV_MODE=0 and fill in [licence] (see the README).
export HALYARD_DEV_MODE=${HALYARD_DEV_MODE:-1}
echo; echo "== halyard config check examples/quickstart.toml (secrets masked)"
"$halyard" config check examples/quickstart.toml | head -12

echo; echo "== starting the receiver: halyard receive --listen 127.0.0.1:8080"
HALYARD_RECEIVER_API_KEY=$HALYARD_API_KEY "$halyard" receive --listen 127.0.0.1:8080 \
  --store "$out/received.db" >"$out/receiver.stats" 2>"$out/receiver.log" &
receiver=$!
echo "== starting the host: halyard run --config examples/quickstart.toml (HALYARD_DEV_MODE=$HALYARD_DEV_MODE)"
RUST_LOG=${RUST_LOG:-info} "$halyard" run --config examples/quickstart.toml 2>"$out/host.log" &
host=$!
stop() { kill -TERM "$host" 2>/dev/null || true; wait "$host" 2>/dev/null || true
         kill -TERM "$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true; }
trap 'stop; exit 130' INT TERM
sleep "${QUICKSTART_SECONDS:-15}"
stop
trap - INT TERM

echo; echo "== host totals (from $out/host.log)"
grep -E "totals|dead-letter|quarantined" "$out/host.log" | tail -5 || true
echo; echo "== receiver stats: $(cat "$out/receiver.stats")"
echo "   stored events are in $out/received.db (table events); the host's buffer and"
echo "   dead letters are in $out/data/buffer.db (table dead_letter)"
