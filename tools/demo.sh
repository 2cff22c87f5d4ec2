#!/usr/bin/env bash
# A small PeerShare network on loopback, showing the whole flow that exists today:
# three nodes join through the first; one shares a file, the others find and download it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary: PEERSHARE_BIN, else where cargo builds it (CARGO_TARGET_DIR, else ./target).
BIN=${PEERSHARE_BIN:-${CARGO_TARGET_DIR:-./target}/release/peershare}
[ -x "$BIN" ] || cargo build --release
[ -x "$BIN" ] || { echo "no peershare binary at $BIN" >&2; exit 1; }
work=$(mktemp -d /tmp/peershare-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # name port api-port [bootstrap]
  local args=(run --data-dir "$work/$1" --bind 127.0.0.1 --port "$2" --api-port "$3" -q)
  [ -n "${4:-}" ] && args+=(--bootstrap "$4")
  "$BIN" "${args[@]}" >"$work/$1.out" &
  pids+=($!)
  for _ in $(seq 50); do grep -q '^ready' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^ready' "$work/$1.out" || { echo "node $1 did not start (set DEMO_PORT to use other ports)" >&2; exit 1; }
  echo "== $1: $(grep node_id "$work/$1.out")  udp/tcp 127.0.0.1:$2  api 127.0.0.1:$3"
}

# Below Linux's ephemeral range (32768-60999), where the kernel hands out client ports.
base=${DEMO_PORT:-28400}
start alice $base $((base + 100))
start bob   $((base + 1)) $((base + 101)) 127.0.0.1:$base
start carol $((base + 2)) $((base + 102)) 127.0.0.1:$base
sleep 1

# A 3 MB "sample" with random bytes, shared by bob in place.
size=3000000
head -c $size /dev/urandom > "$work/drum-loop.wav"
echo; echo "== bob shares drum-loop.wav"
# Not `| tee /dev/stderr | head -1`: with pipefail, head's early exit can kill tee with SIGPIPE
# and the pipeline's failure would end the demo.
added=$("$BIN" add "$work/drum-loop.wav" --api 127.0.0.1:$((base + 101)))
echo "$added" >&2
id=${added%%$'\n'*}
echo; echo "== carol asks the DHT who has it"
"$BIN" peers "$id" --api 127.0.0.1:$((base + 102))
echo; echo "== the same question the way an EchoChain client asks it (raw JSON over TCP)"
python3 - "$((base + 102))" "$id" <<'PY'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = {"type": "local_request_content_info", "payload": {"content_hash": sys.argv[2]}}
print(">>", json.dumps(req)); s.sendall(json.dumps(req).encode()); print("<<", s.recv(4096).decode().strip())
PY
echo; echo "== carol downloads it (every chunk verified against its SHA-256)"
"$BIN" get "$id" -o "$work/carol-files" --api 127.0.0.1:$((base + 102))
cmp "$work/drum-loop.wav" "$work/carol-files/drum-loop.wav" && echo "byte-identical"
echo; echo "== alice downloads it too: from bob and from carol, who serves what she has"
"$BIN" get "$id" -o "$work/alice-files" --api 127.0.0.1:$((base + 100))
"$BIN" ls --api 127.0.0.1:$((base + 100))
echo; echo "== alice's view"
"$BIN" status --api 127.0.0.1:$((base + 100))
echo; echo "== what alice received: the file, and what the wire carried for it"
"$BIN" status --json --api 127.0.0.1:$((base + 100)) | python3 -c '
import json, sys
b = json.load(sys.stdin)["bandwidth"]
size, wire, dup = int(sys.argv[1]), b["down_total"], b.get("down_duplicate", 0)
print(f"alice received {size} bytes of file data; {wire} bytes on the wire:")
print(f"  {dup} bytes of second copies of chunks (a download asks its last chunks of two peers,")
print(f"  the copy that comes second is checked and dropped),")
print(f"  {wire - size - dup} bytes of manifest, handshakes and framing")
' "$size"
