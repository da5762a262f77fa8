#!/usr/bin/env bash
# Builds the host for 64-bit ARM Linux (aarch64-unknown-linux-gnu) and tests
# it under qemu-user, in one command from a fresh clone:
#
#   tools/aarch64.sh            # the device build (`--profile dist`)
#   PROFILE=release tools/aarch64.sh
#
# 1. installs Debian's cross compiler (gcc-aarch64-linux-gnu, for ring and
#    SQLite's C code, and as the linker) and qemu-user when missing, and adds
#    the Rust targets;
# 2. cross-compiles `halyard`, and builds the example guests (wasm32-wasip2)
#    and a native `halyard` (for `halyard receive` and the cache check);
# 3. under `qemu-aarch64`: `halyard plugin check` on every example guest,
#    sharing one compile cache with the native host first, so the ARM host
#    must compile its own artefacts beside the x86 ones (the cache is keyed
#    by wasmtime's compatibility hash, which names the target; an x86
#    artefact is never loaded on ARM). Exactly twice as many artefacts after;
# 4. a short pipeline under qemu: a file of N sensor lines → jsonl decoder →
#    range validator → redact privacy → fraction sampler → buffer → http →
#    `halyard receive` running natively on 127.0.0.1; the receiver must
#    store exactly the lines the validator accepts, and the host's own
#    totals must say the same.
#
# Exits non-zero with the reason on any mismatch. Not run by CI (a cross
# build of wasmtime and cranelift on a 2-core machine takes far longer
# than its budget); run it before a release or when touching anything
# platform-specific. Everything goes under target/aarch64-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
PROFILE=${PROFILE:-dist}
LINES=${LINES:-2000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
work=target/aarch64-check
sysroot=/usr/aarch64-linux-gnu

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

say "tools: cross compiler, qemu-user, Rust targets"
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v curl >/dev/null || missing+=(curl)
command -v file >/dev/null || missing+=(file)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
rustup target add "$TARGET" wasm32-wasip2

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
qemu=(qemu-aarch64 -L "$sysroot")

say "cross build: cargo build --profile $PROFILE --target $TARGET -p halyard"
started=$(date +%s)
nice -n 19 cargo build --profile "$PROFILE" --target "$TARGET" -p halyard --bin halyard
echo "built in $(( $(date +%s) - started )) s"
arm="$TARGET_DIR/$TARGET/$PROFILE/halyard"
kind=$(file -b "$arm")
echo "$kind"
grep -q "ARM aarch64" <<<"$kind" || fail "$arm is not an aarch64 binary"
echo "size: $(stat -c %s "$arm") bytes"

say "native host (for halyard receive) and the example guests"
cargo build -p halyard --bin halyard
native="$TARGET_DIR/debug/halyard"
cargo build --release --target wasm32-wasip2 --manifest-path guests/Cargo.toml --target-dir target/guests
guests=target/guests/wasm32-wasip2/release

rm -rf "$work" && mkdir -p "$work"
cache="$work/cache"

say "plugin check under qemu-aarch64, one cache shared with the native host"
names=(sim_source jsonl_decoder range_validator redact_privacy fraction_sampler)
for g in "${names[@]}"; do
  "$native" plugin check --cache-dir "$cache" "$guests/$g.wasm" >/dev/null || fail "native check of $g"
done
x86_artefacts=$(find "$cache" -type f -name '*.cwasm*' | wc -l)
[ "$x86_artefacts" -eq ${#names[@]} ] || { ls -la "$cache"; fail "expected ${#names[@]} x86 artefacts, found $x86_artefacts"; }
for g in "${names[@]}"; do
  started=$(date +%s%N)
  out=$("${qemu[@]}" "$arm" plugin check --cache-dir "$cache" "$guests/$g.wasm") || { echo "$out"; fail "aarch64 check of $g"; }
  verdict=$(grep '^verdict:' <<<"$out")
  printf '%-18s %s  (%d ms under qemu, compiled)\n' "$g" "$verdict" $(( ($(date +%s%N) - started) / 1000000 ))
  grep -q '^verdict:  valid' <<<"$out" || fail "$g: $verdict"
done
all_artefacts=$(find "$cache" -type f -name '*.cwasm*' | wc -l)
[ "$all_artefacts" -eq $(( 2 * ${#names[@]} )) ] \
  || fail "expected $(( 2 * ${#names[@]} )) artefacts (x86 and aarch64 apart), found $all_artefacts"
echo "cache: $x86_artefacts x86 artefacts, then $all_artefacts: the ARM host compiled its own"
for g in "${names[@]}"; do
  started=$(date +%s%N)
  "${qemu[@]}" "$arm" plugin check --cache-dir "$cache" "$guests/$g.wasm" >/dev/null || fail "warm aarch64 check of $g"
  printf '%-18s warm cache: %d ms under qemu\n' "$g" $(( ($(date +%s%N) - started) / 1000000 ))
done
[ "$(find "$cache" -type f -name '*.cwasm*' | wc -l)" -eq "$all_artefacts" ] || fail "a warm check wrote a new artefact"

say "pipeline under qemu-aarch64: $LINES lines → four example stages → halyard receive (native)"
# Values with two decimals never sit on the validator's bounds (0 and 60).
expected=$(python3 - "$work/sensors.jsonl" "$LINES" <<'EOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
ok = 0
with open(path, "w") as f:
    for i in range(n):
        value = round(((i * 37) % 1000) / 10 - 10.05, 2)
        ok += 0 <= value <= 60
        f.write(json.dumps({"device": f"d{i % 50}", "metric": "temp", "value": value,
                            "ts": 1_700_000_000_000 + i, "operator": ["alice", "bob"][i % 2]}) + "\n")
print(ok)
EOF
)
echo "expected: $expected of $LINES lines accepted"
ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r hub_port status_port <<<"$ports"
key="arm-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$work/host.toml" <<EOF
[host]
id = "aarch64-check"
data_dir = "$work/data"

[[input]]
type = "file"
name = "sensors"
path = "$work/sensors.jsonl"
decoder = { plugin = "$guests/jsonl_decoder.wasm" }

[[stages.validate]]
plugin = "$guests/range_validator.wasm"
config = { "min.temp" = 0, "max.temp" = 60 }

[[stages.privacy]]
plugin = "$guests/redact_privacy.wasm"
config = { hash_keys = "operator", salt = "aarch64" }

[[stages.sample]]
plugin = "$guests/fraction_sampler.wasm"
config = { fraction = 1 }

[batch]
max_events = 250
max_age_ms = 200

[health]
listen = "127.0.0.1:$status_port"

[log]
format = "json"

[transport]
type = "http"
url = "http://127.0.0.1:$hub_port/v1/batches"
api_key = "\${HALYARD_API_KEY}"
EOF
export HALYARD_API_KEY=$key HALYARD_DEV_MODE=1
HALYARD_RECEIVER_API_KEY=$key "$native" receive --listen "127.0.0.1:$hub_port" \
  --store "$work/received.db" >"$work/receiver.stats" 2>"$work/receiver.log" &
receiver=$!
started=$(date +%s%N)
RUST_LOG=info,halyard::run::file_input=debug "${qemu[@]}" "$arm" run --config "$work/host.toml" 2>"$work/host.log" &
host=$!
cleanup() { kill -TERM "$host" "$receiver" 2>/dev/null || true; }
trap cleanup EXIT

# Until the file input has committed the whole file and the buffer is
# empty (everything delivered), within 300 s.
size=$(stat -c %s "$work/sensors.jsonl")
deadline=$(( $(date +%s) + 300 ))
first_event_ms=""
while :; do
  kill -0 "$host" 2>/dev/null || { cat "$work/host.log"; fail "the aarch64 host exited"; }
  health=$(curl -s "http://127.0.0.1:$status_port/health" || true)
  if [ -z "$first_event_ms" ] && [ -n "$health" ] \
     && python3 -c 'import json,sys; h=json.loads(sys.argv[1]); sys.exit(0 if any(p["stage"]=="validate" and p["events_in"]>0 for p in h["plugins"]) else 1)' "$health" 2>/dev/null; then
    first_event_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  fi
  if grep -q "caught up.*\"offset\":$size[,}]" "$work/host.log" \
     && python3 -c 'import json,sys; h=json.loads(sys.argv[1]); sys.exit(0 if h["buffer"]["events"]==0 else 1)' "$health" 2>/dev/null; then
    break
  fi
  [ "$(date +%s)" -lt "$deadline" ] || { tail -20 "$work/host.log"; fail "not delivered within 300 s"; }
  sleep 0.5
done
echo "start → first event through the validator: ${first_event_ms:-?} ms under qemu"
kill -TERM "$host"; wait "$host" || fail "the aarch64 host exited non-zero"
kill -TERM "$receiver"; wait "$receiver" || fail "the receiver exited non-zero"
trap - EXIT
stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events_stored"])' "$work/receiver.stats")
totals=$(grep '"halyard stopped"' "$work/host.log" | tail -1)
delivered=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["delivered"])' "$totals")
echo "receiver stored $stored; host delivered $delivered; expected $expected"
[ "$stored" -eq "$expected" ] || fail "receiver stored $stored, expected $expected"
[ "$delivered" -eq "$expected" ] || fail "host delivered $delivered, expected $expected"
say "aarch64: OK ($LINES lines, $expected delivered and stored, every guest valid)"
