#!/usr/bin/env bash
# The protocol cores (src/proto, src/dht, src/transfer) are sans-IO state machines: they must not touch
# sockets, the event loop, threads, channels, locks or the real clock. This keeps them
# testable by the deterministic simulator and readable as teaching material. The simulator
# (src/sim) is a driver: it may read the wall clock (for its base instant and run time) but
# never a socket or the event loop.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\bmio\b|crossbeam|parking_lot|std::net::(UdpSocket|TcpStream|TcpListener)|Instant::now\(\)|SystemTime::now\(\)|std::thread|thread_rng|rand::random'
# Tests may use real time for harness bookkeeping, so only non-test code is checked:
# everything above the first `#[cfg(test)]` of each file, and not tests.rs files.
bad=0
sim_pattern='\bmio\b|crossbeam|parking_lot|std::net::(UdpSocket|TcpStream|TcpListener)|std::thread'
check() { # file pattern
  local body hits
  body=$(awk '/#\[cfg\(test\)\]/{exit} {print}' "$1")
  if hits=$(grep -nE "$2" <<<"$body" | grep -vE '^\s*[0-9]+:\s*//'); then
    echo "$1: I/O or real clock in a sans-IO core:"; echo "$hits"; return 1
  fi
}
for f in $(find src/proto src/dht src/transfer src/nat -name '*.rs' ! -name tests.rs ! -name engine_tests.rs); do
  check "$f" "$pattern" || bad=1
done
for f in $(find src/sim -name '*.rs' 2>/dev/null); do
  check "$f" "$sim_pattern" || bad=1
done
if [ "$bad" = 1 ]; then exit 1; fi
echo "sans-IO boundary ok: src/proto, src/dht, src/transfer and src/nat do no I/O; src/sim opens no socket"
