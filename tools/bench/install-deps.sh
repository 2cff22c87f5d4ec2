#!/usr/bin/env bash
# Installs (Debian, as root) what `make bench` needs besides the Rust toolchain:
#   python3-libtorrent  the libtorrent-rasterbar anchor (for Debian's /usr/bin/python3)
#   nginx-light         the HTTP anchor (falls back to `nginx` where the light flavour is gone)
#   curl, openssl       the HTTP client and the SHA-256 anchor (SHA-NI)
#   iperf3              the loopback TCP throughput ceiling
#   netcat-openbsd, tar the `tar c | nc` -> `nc -l | tar x` anchor of the folder scenarios
#   procps              kill, uptime (load reported next to the figures)
# Idempotent: installs only what is missing, and runs `apt-get update` once, only then.
# Services are not started (the harness runs its own nginx in the foreground).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

need=()
for p in python3 python3-libtorrent curl openssl iperf3 procps netcat-openbsd tar; do
  installed "$p" || need+=("$p")
done
installed nginx-light || installed nginx || installed nginx-core || need+=(nginx)

if [ ${#need[@]} -eq 0 ]; then
  echo "bench deps: all present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "bench deps missing (${need[*]}): run this script as root" >&2
  exit 1
fi

apt-get update -qq
# nginx: prefer the light flavour where the distribution still has it.
for i in "${!need[@]}"; do
  if [ "${need[$i]}" = nginx ] && apt-cache show nginx-light >/dev/null 2>&1; then
    need[$i]=nginx-light
  fi
done
echo "bench deps: installing ${need[*]}"
apt-get install -y -qq --no-install-recommends "${need[@]}"

/usr/bin/python3 -c 'import libtorrent' || { echo "python3-libtorrent did not import" >&2; exit 1; }
