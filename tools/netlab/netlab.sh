#!/usr/bin/env bash
# The NAT lab: Linux network namespaces standing for an internet, routers that NAT with
# iptables, and hosts behind them (protocol-spec/nat.md, section 9). Needs root.
#
#   netlab.sh up PREFIX      build the lab; PREFIX names every namespace (PREFIX-...)
#   netlab.sh down PREFIX    remove it (idempotent)
#   netlab.sh gc             remove labs whose creator (psl<PID>) is gone: after a crash
#   netlab.sh hosts          print the hosts: NAME KIND IP (the namespace is PREFIX-NAME)
#
# Topology (addresses from the documentation ranges only, and only inside the namespaces):
#
#   PREFIX-inet: bridge br0, the "internet", 203.0.113.0/24
#     boot1 203.0.113.2, boot2 203.0.113.3   public nodes: bootstrap, rendezvous, relay
#     pub-s 203.0.113.11, pub-l 203.0.113.12 public seeder and leecher
#     r-<type>-<role>  203.0.113.(20+k)      routers, one per NAT type and role
#       <type>-<role>  192.0.2.(8k+2)/29     the host behind it (router: 192.0.2.(8k+1))
#
# NAT types (RFC 4787 terms):
#   eim  endpoint-independent mapping and filtering ("full cone"): MASQUERADE keeps the
#        port, and unsolicited inbound traffic is forwarded to the host (DNAT)
#   prc  endpoint-independent mapping, address-and-port-dependent filtering ("port-restricted
#        cone"): plain MASQUERADE, unsolicited inbound dropped
#   sym  address-and-port-dependent mapping ("symmetric"): MASQUERADE --random-fully
# Routers drop what they do not forward (no RST, no ICMP): a SYN that arrives before the
# host's own SYN has opened the mapping must be lost, not refused, for a simultaneous open.
set -euo pipefail

IPT=${IPT:-iptables}
TYPES=(eim prc sym)
ROLES=(s l)

hosts() {
  echo "boot1 public 203.0.113.2"
  echo "boot2 public 203.0.113.3"
  echo "pub-s public 203.0.113.11"
  echo "pub-l public 203.0.113.12"
  local k=1
  for t in "${TYPES[@]}"; do
    for r in "${ROLES[@]}"; do
      echo "$t-$r $t 192.0.2.$((8 * k + 2))"
      k=$((k + 1))
    done
  done
}

# veth from the bridge into namespace $1 as interface $2, with address $3.
attach() {
  local ns=$1 ifname=$2 addr=$3 v=$4
  ip -n "$P-inet" link add "$v" type veth peer name "$ifname" netns "$ns"
  ip -n "$P-inet" link set "$v" master br0 up
  ip -n "$ns" addr add "$addr" dev "$ifname"
  ip -n "$ns" link set "$ifname" up
}

newns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
}

router_rules() { # ns type host_ip
  local ns=$1 t=$2 host=$3
  local x="ip netns exec $ns $IPT -w"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  if [ "$t" = sym ]; then
    $x -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully
  else
    $x -t nat -A POSTROUTING -o wan -j MASQUERADE
  fi
  if [ "$t" = eim ]; then
    # Endpoint-independent filtering: anything addressed to the router's public address that
    # is not a reply goes to the host, same port (MASQUERADE keeps the host's port).
    $x -t nat -A PREROUTING -i wan -p udp -j DNAT --to-destination "$host"
    $x -t nat -A PREROUTING -i wan -p tcp -j DNAT --to-destination "$host"
  fi
  $x -A FORWARD -i lan -o wan -j ACCEPT
  $x -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED,DNAT -j ACCEPT
  $x -A FORWARD -i wan -j DROP
  $x -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  $x -A INPUT -i wan -j DROP
}

up() {
  trap 'echo "netlab: setup failed; cleaning up" >&2; down' ERR
  command -v "$IPT" >/dev/null || { echo "netlab: $IPT not installed" >&2; exit 2; }
  newns "$P-inet"
  ip -n "$P-inet" link add br0 type bridge
  ip -n "$P-inet" link set br0 up
  local n=0
  while read -r name kind ip; do
    n=$((n + 1))
    local ns="$P-$name"
    newns "$ns"
    if [ "$kind" = public ]; then
      attach "$ns" eth0 "$ip/24" "${P}v$n"
      continue
    fi
    local k=$(((${ip##*.} - 2) / 8))
    local r="$P-r-$name"
    newns "$r"
    attach "$r" wan "203.0.113.$((20 + k))/24" "${P}w$n"
    ip -n "$r" link add lan type veth peer name eth0 netns "$ns"
    ip -n "$r" addr add "192.0.2.$((8 * k + 1))/29" dev lan
    ip -n "$r" link set lan up
    ip -n "$ns" addr add "$ip/29" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "192.0.2.$((8 * k + 1))"
    router_rules "$r" "$kind" "$ip"
  done < <(hosts)
  trap - ERR
}

down() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-" || true); do
    # Processes left in the namespace (nodes of a crashed run) go first.
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

gc() {
  local p
  for p in $(ip netns list | awk '{print $1}' | grep -oE '^psl[0-9]+' | sort -u); do
    if ! kill -0 "${p#psl}" 2>/dev/null; then
      P=$p down
      echo "netlab: removed stale lab $p"
    fi
  done
}

case "${1:-}" in
  up) P=$2; up ;;
  down) P=$2; down ;;
  gc) gc ;;
  hosts) hosts ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
