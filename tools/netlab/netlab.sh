#!/usr/bin/env bash
# The NAT lab: Linux network namespaces standing for an internet, routers that NAT with
# iptables, and hosts behind them (protocol-spec/nat.md, section 9). Needs root.
#
#   netlab.sh up PREFIX      build the lab; PREFIX names every namespace (PREFIX-...)
#   netlab.sh up-lan PREFIX  build the LAN lab instead (below: LAN discovery, nat.md 11)
#   netlab.sh up-shapes PREFIX  build the shapes lab instead (below: office, double NAT, IPv6)
#   netlab.sh down PREFIX    remove it (idempotent)
#   netlab.sh gc             remove labs whose creator (psl<PID>) is gone: after a crash
#   netlab.sh hosts          print the hosts: NAME KIND IP (the namespace is PREFIX-NAME)
#   netlab.sh hosts-shapes   the same for the shapes lab
#
# Processes the lab itself runs (a STUN responder, miniupnpd on the NAT-PMP routers) keep
# their files in ${TMPDIR:-/tmp}/netlab-PREFIX and are stopped by `down`, which `up` also runs
# when it fails.
#
# Topology (addresses from the documentation ranges only, and only inside the namespaces):
#
#   PREFIX-inet: bridge br0, the "internet", 203.0.113.0/24
#     boot1 203.0.113.2, boot2 203.0.113.3   public nodes: bootstrap, rendezvous, relay
#     stun 203.0.113.4                        a STUN responder (tools/netlab/stun.py), for miniupnpd
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
#   pmp  a port-restricted cone like prc, plus miniupnpd offering NAT-PMP (RFC 6886) and PCP
#        on the LAN side: the host can map its ports (miniupnpd adds nftables DNAT rules);
#        the node there speaks NAT-PMP (tests/netlab.rs runs it with --no-pcp)
#   pcp  the same router; the node there speaks PCP (RFC 6887), its default
#   upnp a port-restricted cone with miniupnpd offering UPnP-IGD only (SSDP, SOAP on port
#        5000; no NAT-PMP or PCP): the node finds no PCP server and falls back to UPnP
#
# Why a STUN responder: miniupnpd 2.3.1 refuses every mapping while its external address is
# reserved or private ("Port forwarding is impossible"), and every documentation range is
# reserved; 2.3.1 has no option to allow it (ext_allow_private_ipv4 came later), and ext_ip=
# rejects reserved addresses outright. With ext_perform_stun=yes it asks a STUN server instead
# and enables forwarding when the four answers show an unfiltered path, which they do here:
# the router's wan address is what the lab's internet sees. So the lab keeps the documentation
# ranges and runs stun.py on a public host.
# The LAN lab (`up-lan`), for LAN discovery: several hosts on one link.
#
#   PREFIX-inet: bridge br0, 203.0.113.0/24; pub 203.0.113.2, a public node (bootstrap)
#   PREFIX-ra / PREFIX-rb: routers (wan 203.0.113.21 / .22), port-restricted cone NAT
#     without hairpinning, each with a bridge `lan` (192.168.10.1/24 / 192.168.20.1/24)
#     a1 192.168.10.2, a2 192.168.10.3      LAN A
#     b1 192.168.20.2, b2 192.168.20.3      LAN B
#   PREFIX-iso: a bridge alone (no router, no internet), IPv6 only, no DAD:
#     i1 fd00:5053::1, i2 fd00:5053::2, i3 fd00:5053::3 (/64)
# Routers drop what they do not forward (no RST, no ICMP): a SYN that arrives before the
# host's own SYN has opened the mapping must be lost, not refused, for a simultaneous open.
#
# The shapes lab (`up-shapes`, issue 20): networks that are not one router per host.
#
#   PREFIX-inet: bridge br0, 203.0.113.0/24 and 2001:db8::/64 (both stacks)
#     boot1 203.0.113.2 2001:db8::2, boot2 203.0.113.3 2001:db8::3   public, dual-stack
#   office: PREFIX-r-off (wan 203.0.113.20), port-restricted cone without hairpinning, with
#     a bridge `lan` 192.0.2.0/28 (router .1): o1 .2, o2 .3 (LAN discovery on), o3 .4,
#     o4 .5 (the same office with --no-lan)
#   home: port-restricted cone routers r-h-s (wan 203.0.113.21) and r-h-l (.22),
#     hosts h-s 192.0.2.18 and h-l 192.0.2.26 (/29 each)
#   double NAT, endpoint-independent: PREFIX-cgn-e (wan 203.0.113.30; lan bridge
#     100.64.1.1/24), plain MASQUERADE (endpoint-independent mapping, unsolicited inbound
#     dropped); behind it home routers r-de-s (wan 100.64.1.2) and r-de-l (100.64.1.3),
#     port-restricted cones, with hosts de-s 192.0.2.34 and de-l 192.0.2.42
#   double NAT behind a symmetric CGN: PREFIX-cgn-y (wan 203.0.113.31; lan 100.64.2.1/24),
#     MASQUERADE --random-fully; home routers r-dy-s (100.64.2.2), r-dy-l (100.64.2.3) with
#     hosts dy-s 192.0.2.50 and dy-l 192.0.2.58
#   IPv6 only, stateful firewalls: routers fw-s, fw-l, fw-f (wan 2001:db8::21, ::22, ::23)
#     route 2001:db8:1::/64, 2001:db8:2::/64, 2001:db8:3::/64 without NAT and drop
#     (ip6tables, no RST or ICMP) whatever inbound is not ESTABLISHED,RELATED; hosts v6-s
#     2001:db8:1::2, v6-l 2001:db8:2::2 and v6-f 2001:db8:3::2 (for a seeder started just
#     before it is asked), no IPv4 at all
# Every namespace's iptables and ip6tables rules go with it on `down`.
set -euo pipefail

IPT=${IPT:-iptables}
# ip6tables of the same package as $IPT (iptables-legacy goes with ip6tables-legacy).
IPT6=${IPT6:-${IPT/iptables/ip6tables}}
TYPES=(eim prc sym pmp pcp upnp)
STUN_IP=203.0.113.4
HERE=$(cd "$(dirname "$0")" && pwd)
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

# The "internet": namespace PREFIX-inet with the bridge br0 every public interface joins.
internet() {
  newns "$P-inet"
  ip -n "$P-inet" link add br0 type bridge
  ip -n "$P-inet" link set br0 up
}

newns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
}

# miniupnpd on router namespace $1 (its LAN is `lan`, its WAN `wan`) of kind $3: NAT-PMP/PCP
# only (pmp, pcp), or UPnP-IGD only (upnp: SSDP, and HTTP on port 5000), with its own config, lease file and log in the lab's temp dir. Its rules
# go in its own nftables table `miniupnpd` (inet): DNAT in a prerouting chain, and a forward
# chain that accepts; the iptables FORWARD chain accepts DNATed connections (router_rules).
miniupnpd_start() {
  local ns=$1 dir=$2 kind=$3 upnp=no natpmp=yes
  if [ "$kind" = upnp ]; then upnp=yes natpmp=no; fi
  ip netns exec "$ns" nft -f - <<EOF
table inet miniupnpd {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
EOF
  cat >"$dir/$ns.conf" <<EOF
ext_ifname=wan
listening_ip=lan
enable_upnp=$upnp
enable_natpmp=$natpmp
http_port=5000
ext_perform_stun=yes
ext_stun_host=$STUN_IP
ext_stun_port=3478
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
lease_file=$dir/$ns.leases
# PCP mappings may be as short as NAT-PMP's (the default minimum is 120 s): the lab asks
# for 10 s to see renewals.
min_lifetime=10
secure_mode=yes
system_uptime=no
uuid=00000000-0000-4000-8000-000000000001
allow 1024-65535 192.0.2.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
  # -d: stay in the foreground (no pid file in /var/run, no syslog daemon needed); `down`
  # finds it through the namespace. -4: no IPv6 in the lab.
  ip netns exec "$ns" setsid miniupnpd -f "$dir/$ns.conf" -d -4 -P "$dir/$ns.pid" \
    </dev/null >"$dir/$ns.log" 2>&1 &
}

# Waits until miniupnpd on $1 has finished its STUN check and enabled port forwarding.
miniupnpd_wait() {
  local ns=$1 dir=$2 i
  for i in $(seq 100); do
    grep -q "Port forwarding is now enabled" "$dir/$ns.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "netlab: miniupnpd on $ns did not enable port forwarding; its log:" >&2
  cat "$dir/$ns.log" >&2 || true
  return 1
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
  local tool
  for tool in "$IPT" nft miniupnpd python3; do
    command -v "$tool" >/dev/null || { echo "netlab: $tool not installed" >&2; exit 2; }
  done
  local dir="${TMPDIR:-/tmp}/netlab-$P"
  mkdir -p "$dir"
  internet
  newns "$P-stun"
  attach "$P-stun" eth0 "$STUN_IP/24" "${P}st"
  ip netns exec "$P-stun" setsid python3 "$HERE/stun.py" "$STUN_IP" 3478 \
    </dev/null >"$dir/stun.log" 2>&1 &
  local pmp=()
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
    if [ "$kind" = pmp ] || [ "$kind" = pcp ] || [ "$kind" = upnp ]; then
      miniupnpd_start "$r" "$dir" "$kind"
      pmp+=("$r")
    fi
  done < <(hosts)
  for r in "${pmp[@]}"; do miniupnpd_wait "$r" "$dir"; done
  trap - ERR
}

lan_hosts() {
  echo "pub public 203.0.113.2"
  echo "a1 a 192.168.10.2"
  echo "a2 a 192.168.10.3"
  echo "b1 b 192.168.20.2"
  echo "b2 b 192.168.20.3"
  echo "i1 iso fd00:5053::1"
  echo "i2 iso fd00:5053::2"
  echo "i3 iso fd00:5053::3"
}

# A host namespace $1 on the bridge `lan` of namespace $2 with address $3 (veth $4).
on_bridge() {
  local ns=$1 br=$2 addr=$3 v=$4 extra=${5:-}
  newns "$ns"
  ip -n "$br" link add "$v" type veth peer name eth0 netns "$ns"
  ip -n "$br" link set "$v" master lan up
  # shellcheck disable=SC2086
  ip -n "$ns" addr add "$addr" dev eth0 $extra
  ip -n "$ns" link set eth0 up
}

lan_up() {
  trap 'echo "netlab: setup failed; cleaning up" >&2; down' ERR
  command -v "$IPT" >/dev/null || { echo "netlab: $IPT not installed" >&2; exit 2; }
  mkdir -p "${TMPDIR:-/tmp}/netlab-$P"
  internet
  newns "$P-pub"
  attach "$P-pub" eth0 "203.0.113.2/24" "${P}pub"
  local n=0 side net
  for side in a b; do
    n=$((n + 1))
    net=$((n * 10))
    local r="$P-r$side"
    newns "$r"
    attach "$r" wan "203.0.113.$((20 + n))/24" "${P}w$side"
    ip -n "$r" link add lan type bridge
    ip -n "$r" addr add "192.168.$net.1/24" dev lan
    ip -n "$r" link set lan up
    local h
    for h in 1 2; do
      on_bridge "$P-$side$h" "$r" "192.168.$net.$((h + 1))/24" "${P}$side$h"
      ip -n "$P-$side$h" route add default via "192.168.$net.1"
    done
    # Port-restricted cone, no hairpinning: the hosts of one LAN reach each other only
    # over the LAN.
    router_rules "$r" prc "192.168.$net.2"
  done
  newns "$P-iso"
  ip -n "$P-iso" link add lan type bridge
  ip -n "$P-iso" link set lan up
  for h in 1 2 3; do
    on_bridge "$P-i$h" "$P-iso" "fd00:5053::$h/64" "${P}i$h" nodad
  done
  trap - ERR
}

shapes_hosts() {
  echo "boot1 public 203.0.113.2 2001:db8::2"
  echo "boot2 public 203.0.113.3 2001:db8::3"
  local i
  for i in 1 2 3 4; do echo "o$i office 192.0.2.$((i + 1))"; done
  echo "h-s home 192.0.2.18"
  echo "h-l home 192.0.2.26"
  echo "de-s cgn-eim 192.0.2.34"
  echo "de-l cgn-eim 192.0.2.42"
  echo "dy-s cgn-sym 192.0.2.50"
  echo "dy-l cgn-sym 192.0.2.58"
  echo "v6-s firewall6 2001:db8:1::2"
  echo "v6-l firewall6 2001:db8:2::2"
  echo "v6-f firewall6 2001:db8:3::2"
}

# veth from bridge $2 of namespace $1 into namespace $3 as interface $4 with address $5
# (veth $6 on the bridge's side; $7: extra `ip addr` flags such as nodad).
plug() {
  local brns=$1 br=$2 ns=$3 ifname=$4 addr=$5 v=$6 extra=${7:-}
  ip -n "$brns" link add "$v" type veth peer name "$ifname" netns "$ns"
  ip -n "$brns" link set "$v" master "$br" up
  # shellcheck disable=SC2086
  ip -n "$ns" addr add "$addr" dev "$ifname" $extra
  ip -n "$ns" link set "$ifname" up
}

# Home router $1 (port-restricted cone; its wan already plugged in; default route via $4 if
# given: on the lab's internet every address is on the link) with host $2 at 192.0.2.$3 on
# a /29 of its own (router: one below).
home_router() {
  local r=$1 h=$2 ip=192.0.2.$3 gw=192.0.2.$(($3 - 1)) up=${4:-}
  newns "$h"
  ip -n "$r" link add lan type veth peer name eth0 netns "$h"
  ip -n "$r" addr add "$gw/29" dev lan
  ip -n "$r" link set lan up
  if [ -n "$up" ]; then ip -n "$r" route add default via "$up"; fi
  ip -n "$h" addr add "$ip/29" dev eth0
  ip -n "$h" link set eth0 up
  ip -n "$h" route add default via "$gw"
  router_rules "$r" prc "$ip"
}

# A CGN $1 (wan 203.0.113.$2, a bridge `lan` 100.64.$3.1/24) of type $4 (prc: endpoint-
# independent mapping; sym: --random-fully), and behind it home routers r-$5-s and r-$5-l
# (100.64.$3.2 and .3) with hosts $5-s and $5-l at 192.0.2.$6 and 192.0.2.$(($6 + 8)).
cgn() {
  local c=$P-$1 net=$3 t=$4 name=$5 host=$6 role k=1
  newns "$c"
  attach "$c" wan "203.0.113.$2/24" "${P}w$2"
  ip -n "$c" link add lan type bridge
  ip -n "$c" addr add "100.64.$net.1/24" dev lan
  ip -n "$c" link set lan up
  router_rules "$c" "$t" "100.64.$net.2"
  for role in s l; do
    k=$((k + 1))
    local r="$P-r-$name-$role"
    newns "$r"
    plug "$c" lan "$r" wan "100.64.$net.$k/24" "r$role"
    home_router "$r" "$P-$name-$role" "$host" "100.64.$net.1"
    host=$((host + 8))
  done
}

# An IPv6 router $1 (wan 2001:db8::$2) routing 2001:db8:$3::/64 to host $4 without NAT, with
# a stateful firewall: outbound passes, inbound only when conntrack knows it (ESTABLISHED,
# RELATED); the rest is dropped, with no RST or ICMP. Neighbour discovery is let in.
fw6_router() {
  local r=$P-$1 net=$3 h=$P-$4
  local x="ip netns exec $r $IPT6 -w"
  newns "$r"
  plug "$P-inet" br0 "$r" wan "2001:db8::$2/64" "${P}f$2" nodad
  newns "$h"
  ip -n "$r" link add lan type veth peer name eth0 netns "$h"
  ip -n "$r" addr add "2001:db8:$net::1/64" dev lan nodad
  ip -n "$r" link set lan up
  ip -n "$h" addr add "2001:db8:$net::2/64" dev eth0 nodad
  ip -n "$h" link set eth0 up
  ip -n "$h" -6 route add default via "2001:db8:$net::1"
  ip netns exec "$r" sysctl -qw net.ipv6.conf.all.forwarding=1
  $x -A FORWARD -i lan -o wan -j ACCEPT
  $x -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  $x -A FORWARD -i wan -j DROP
  local t
  for t in neighbour-solicitation neighbour-advertisement; do
    $x -A INPUT -i wan -p ipv6-icmp --icmpv6-type "$t" -j ACCEPT
  done
  $x -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  $x -A INPUT -i wan -j DROP
}

shapes_up() {
  trap 'echo "netlab: setup failed; cleaning up" >&2; down' ERR
  local tool
  for tool in "$IPT" "$IPT6"; do
    command -v "$tool" >/dev/null || { echo "netlab: $tool not installed" >&2; exit 2; }
  done
  mkdir -p "${TMPDIR:-/tmp}/netlab-$P"
  internet
  local b
  for b in 2 3; do
    newns "$P-boot$((b - 1))"
    attach "$P-boot$((b - 1))" eth0 "203.0.113.$b/24" "${P}b$b"
    ip -n "$P-boot$((b - 1))" addr add "2001:db8::$b/64" dev eth0 nodad
  done
  # The office: one router, four hosts on its LAN.
  local r=$P-r-off i
  newns "$r"
  attach "$r" wan "203.0.113.20/24" "${P}w20"
  ip -n "$r" link add lan type bridge
  ip -n "$r" addr add 192.0.2.1/28 dev lan
  ip -n "$r" link set lan up
  for i in 1 2 3 4; do
    on_bridge "$P-o$i" "$r" "192.0.2.$((i + 1))/28" "o$i"
    ip -n "$P-o$i" route add default via 192.0.2.1
  done
  # Port-restricted cone, no hairpinning: the office hosts reach each other only over the
  # LAN (a packet to the router's own public address goes to the router, not back in).
  router_rules "$r" prc 192.0.2.2
  # Two homes, each host behind its own port-restricted router.
  for i in 1 2; do
    local role=s
    [ $i = 2 ] && role=l
    r=$P-r-h-$role
    newns "$r"
    attach "$r" wan "203.0.113.$((20 + i))/24" "${P}w$((20 + i))"
    home_router "$r" "$P-h-$role" "$((10 + 8 * i))"
  done
  cgn cgn-e 30 1 prc de 34
  cgn cgn-y 31 2 sym dy 50
  # IPv6: two firewalled sites; the public hosts know the routes to them.
  fw6_router fw-s 21 1 v6-s
  fw6_router fw-l 22 2 v6-l
  fw6_router fw-f 23 3 v6-f
  # Every public host and firewall router knows the way to each site but its own.
  local from to
  for from in boot1:0 boot2:0 fw-s:1 fw-l:2 fw-f:3; do
    for to in 1 2 3; do
      [ "${from#*:}" = "$to" ] && continue
      ip -n "$P-${from%:*}" -6 route add "2001:db8:$to::/64" via "2001:db8::$((20 + to))"
    done
  done
  trap - ERR
}

down() {
  local ns pid all
  all=$(ip netns list | awk '{print $1}' | grep -E "^$P-" || true)
  # Processes left in the namespaces (nodes of a crashed run, miniupnpd, the STUN responder)
  # go first: asked to stop, then killed.
  for ns in $all; do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local left=0
    for ns in $all; do [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ] && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for ns in $all; do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "${TMPDIR:-/tmp}/netlab-$P"
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
  up-lan) P=$2; lan_up ;;
  lan-hosts) lan_hosts ;;
  up-shapes) P=$2; shapes_up ;;
  hosts-shapes) shapes_hosts ;;
  down) P=$2; down ;;
  gc) gc ;;
  hosts) hosts ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
