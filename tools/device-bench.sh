#!/usr/bin/env bash
# Measures a host binary the way a device sees it (BENCHMARKS.md, "Device
# builds"): its size, start → first event with a warm compile cache, and
# peak RSS running the quickstart pipeline (simulated sensors and
# examples/data/sensors.jsonl through the four example stages to
# `halyard receive` on loopback).
#
#   tools/device-bench.sh target/dist/halyard [SECONDS]
#
# Needs the example guests ($GUESTS, default target/guests/wasm32-wasip2/release,
# built by `cargo test` or examples/quickstart.sh); the binary itself runs
# the receiver.
#
# A binary built without the compiler runs only precompiled, signed
# plugins: set PRECOMPILE_WITH to a full halyard, which compiles and signs
# the guests (`plugin compile --key`) with a fresh key the config trusts:
#
#   PRECOMPILE_WITH=target/debug/halyard tools/device-bench.sh target/dist/halyard
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: tools/device-bench.sh BINARY [SECONDS]}
seconds=${2:-15}
work=target/device-bench
rm -rf "$work" && mkdir -p "$work"

ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r hub_port status_port <<<"$ports"
export HALYARD_API_KEY="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export HALYARD_DEV_MODE=1 HALYARD_HUB="http://127.0.0.1:$hub_port" HALYARD_STATUS="127.0.0.1:$status_port"
guests=${GUESTS:-target/guests/wasm32-wasip2/release}
sed -e "s|target/quickstart/data|$work/data|" -e "s|target/guests/wasm32-wasip2/release|$guests|g" \
  examples/quickstart.toml >"$work/host.toml"
if [ -n "${PRECOMPILE_WITH:-}" ]; then
  mkdir -p "$work/plugins"
  "$PRECOMPILE_WITH" keygen --out "$work/plugins/signer.key" >/dev/null
  for g in sim_source jsonl_decoder range_validator redact_privacy fraction_sampler; do
    "$PRECOMPILE_WITH" plugin compile "$guests/$g.wasm" --out "$work/plugins/$g.cwasm" \
      --key "$work/plugins/signer.key" --no-cache >/dev/null
  done
  sed -i "s|$guests/\([a-z_]*\)\.wasm|$work/plugins/\1.cwasm|g" "$work/host.toml"
  printf '\n[plugins]\ntrusted_keys = ["%s"]\n' "$(cat "$work/plugins/signer.key.pub")" >>"$work/host.toml"
fi

HALYARD_RECEIVER_API_KEY=$HALYARD_API_KEY "$bin" receive --listen "127.0.0.1:$hub_port" \
  --store "$work/received.db" >"$work/receiver.stats" 2>"$work/receiver.log" &
receiver=$!
trap 'kill -TERM $receiver 2>/dev/null || true' EXIT

# Until the validator has seen an event; prints ms since `started`.
first_event() {
  local started=$1 pid=$2 deadline=$(( $(date +%s) + 120 ))
  while :; do
    kill -0 "$pid" 2>/dev/null || { echo "host exited" >&2; return 1; }
    # One plugin object per match: `stage` comes before `events_in` in it.
    if curl -s "http://127.0.0.1:$status_port/plugins" 2>/dev/null \
        | grep -Eq '"stage":"validate"[^}]*"events_in":[1-9]'; then
      echo $(( ($(date +%s%N) - started) / 1000000 ))
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no event within 120 s" >&2; return 1; }
    sleep 0.005
  done
}

run_once() { # $1: label; prints "start→first event ms" and "peak RSS kB"
  local started pid ms hwm
  # A fresh buffer and file position each run (the file input reads
  # sensors.jsonl from the start); the compile cache stays.
  [ -d "$work/data" ] && find "$work/data" -mindepth 1 -maxdepth 1 ! -name 'cache*' -exec rm -rf {} +
  started=$(date +%s%N)
  RUST_LOG=warn "$bin" run --config "$work/host.toml" 2>>"$work/host.log" &
  pid=$!
  ms=$(first_event "$started" "$pid")
  local until=$(( $(date +%s) + seconds ))
  while [ "$(date +%s)" -lt "$until" ]; do sleep 0.5; done
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid"
  printf '%-5s start→first event %5d ms   peak RSS %6d kB\n' "$1" "$ms" "$hwm"
}

echo "binary: $bin ($(stat -c %s "$bin") bytes)"
run_once cold   # fills data_dir/cache
run_once warm
run_once warm
kill -TERM "$receiver"; wait "$receiver" || true
trap - EXIT
echo "receiver: $(cat "$work/receiver.stats")"
