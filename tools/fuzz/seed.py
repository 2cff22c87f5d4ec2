#!/usr/bin/env python3
"""Seeds for the fuzz targets, from the spec's test vectors and examples.

Writes one file per seed (named by its SHA-1, as libFuzzer names corpus files) into
OUT/<target>/. `run.sh` calls this into a scratch directory and merges the result into
tools/fuzz/corpus/ with `-merge=1`, which keeps only the seeds that add coverage.

Sources: protocol-spec/vectors/*.txt (every valid and invalid vector), the `{"type": ...}`
requests of protocol-spec/api.md, the ledger lines and head file of protocol-spec/ledger.md,
and, for the state files that no spec page shows byte for byte, one sample of each format
built here the way the node writes it.
"""
import hashlib
import json
import os
import re
import struct
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SPEC = os.path.join(ROOT, "protocol-spec")


def vectors(name):
    """The HEX (last field) of every vector line of protocol-spec/vectors/NAME."""
    out = []
    with open(os.path.join(SPEC, "vectors", name)) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(bytes.fromhex(line.split()[-1]))
    if not out:
        sys.exit(f"seed.py: no vectors in {name}")
    return out


def spec_lines(page, pattern):
    with open(os.path.join(SPEC, page)) as f:
        found = [m.group(1) for m in (re.search(pattern, l) for l in f) if m]
    if not found:
        sys.exit(f"seed.py: nothing matches {pattern!r} in {page}")
    return found


def main(out):
    seeds = {}

    def add(target, data):
        seeds.setdefault(target, []).append(data)

    dht = vectors("dht.txt") + vectors("dht-invalid.txt")
    wire_ok = vectors("wire.txt")
    wire = wire_ok + vectors("wire-invalid.txt")
    manifests = vectors("manifest.txt")
    stream_seed = struct.pack("<I", 0x9E3779B9)

    for d in dht:
        add("dht_datagram", d)
        add("explain", b"\x00" + d)
    # dht_node scripts (ops: see fuzz_targets/dht_node.rs): each valid datagram from a peer,
    # then as an answer to the node's own request, then time passing; and all in one run.
    valid_dht = vectors("dht.txt")
    for i, d in enumerate(valid_dht):
        size = struct.pack(">H", len(d))
        add("dht_node", bytes([0, i % 6]) + size + d + bytes([1, 0]) + size + d + bytes([3, 2, 200]))
    # nat_node scripts (ops: see fuzz_targets/nat_node.rs): every datagram from a peer, a
    # reachability check answered, a connection through a rendezvous answered.
    for i, d in enumerate(valid_dht):
        size = struct.pack(">H", len(d))
        add("nat_node", bytes([0, i % 6]) + size + d + bytes([1]) + size + d + bytes([3]))
    for i, d in enumerate(valid_dht):
        size = struct.pack(">H", len(d))
        add("nat_node", bytes([4, 2, 0x22, 1, 0x33, 2, 1]) + size + d + bytes([6, 0, 3, 3]))
        add("nat_node", bytes([7, 1, 0x44, 3, 0, 1]) + size + d + bytes([3, 9, 0, 0, 3]))
    add("dht_node", b"".join(bytes([0, i % 6]) + struct.pack(">H", len(d)) + d + bytes([3])
                             for i, d in enumerate(valid_dht)))
    for w in wire:
        add("wire_frame", b"\xff" + w)
        add("wire_frame", b"\x03" + w)
        add("wire_stream", stream_seed + w)
        add("explain", b"\x01" + w)
    add("wire_stream", stream_seed + b"".join(wire_ok))
    add("wire_stream", b"\x01\x00\x00\x00" + b"".join(wire_ok))
    add("explain", b"\x01" + b"".join(wire_ok))
    trees = vectors("tree.txt")
    for m in trees:
        add("tree_manifest", m)
        add("explain", b"\x04" + m)
    for m in manifests:
        add("manifest", m)
        add("explain", b"\x03" + m)
    for d in dht[:5] + manifests[:2] + trees[:2] + wire_ok[:5]:
        add("explain", b"\x05" + d)
    # A bare HANDSHAKE body: the first valid handshake frame without its 5-byte header.
    hs = [w for w in wire_ok if len(w) > 5 and w[4] == 0x01]
    for h in hs[:2]:
        add("explain", b"\x02" + h[5:])

    requests = [r.encode() for r in spec_lines("api.md", r"^> (\{\"type\".*\})\s*$")]
    requests.append(b'{"type":"status"}')
    requests.append(b'{"type":"set_limits","payload":{"up":"5MB/s","down":"2 KiB/s","peer_up":1000}}')
    requests.append(b'{"type":"local_request_file","payload":{"content_hash":"' + b"ab" * 32
                    + b'","peers":["192.0.2.1:4001","[2001:db8::1]:4001"]}}')
    for r in requests:
        add("api_request", r)
        add("api_framing", stream_seed + r)
    add("api_framing", stream_seed + b"\n".join(requests) + b"\n")
    add("api_framing", stream_seed + b"".join(requests[:4]))
    add("api_framing", stream_seed + b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8002\r\n\r\n" + requests[0])
    add("api_framing", stream_seed + b'{"type":"status"} [1]')

    # NAT-PMP: scripts for the client (ops: see fuzz_targets/nat_pmp.rs), and responses.
    def resp(op, result, epoch, body):
        return bytes([0, 128 + op]) + struct.pack(">HI", result, epoch) + body
    ext = resp(0, 0, 1000, bytes([203, 0, 113, 7]))
    udp = resp(1, 0, 1001, struct.pack(">HHI", 4001, 4001, 7200))
    tcp = resp(2, 0, 1001, struct.pack(">HHI", 4001, 4001, 7200))
    for r in (ext, udp, tcp, resp(1, 2, 5, struct.pack(">HHI", 4001, 0, 0))):
        add("nat_pmp", bytes([7, len(r)]) + r)
    full = bytes([6]) + b"".join(bytes([0, len(r)]) + r for r in (ext, udp, tcp))
    add("nat_pmp", full)
    add("nat_pmp", full + bytes([2, 2, 2, 5]) + b"".join(bytes([0, len(r)]) + r for r in (udp, tcp)))
    add("nat_pmp", bytes([6, 1, 0, 0, 0, 0, 9, 203, 0, 113, 7, 1, 0, 0, 0, 0, 9, 1, 0, 0, 28, 32,
                          1, 0, 0, 0, 0, 9, 1, 0, 0, 28, 32, 3, 255, 255, 5, 1, 0, 0, 0, 0, 9]))
    add("nat_pmp", bytes([6, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 4, 6, 5]))
    route = (b"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
             b"eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
             b"eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n")
    add("nat_pmp", bytes([8, len(route)]) + route)

    # LAN discovery: the spec's vectors as raw datagrams (op 0: source 2 bytes, length, bytes).
    for line in spec_lines("nat.md", r"^lan-vector \S+ ([0-9a-f ]+?)  "):
        d = bytes.fromhex(line.replace(" ", ""))
        add("nat_lan", bytes([0, 1, 2, len(d)]) + d)

    # UPnP-IGD: a router's answers in the order the client asks (split at 0xff bytes: see
    # fuzz_targets/nat_upnp.rs), as miniupnpd sends them.
    ssdp = (b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
            b"LOCATION: http://192.0.2.1:5000/rootDesc.xml\r\n\r\n")
    def http(status, body):
        return b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    desc = http(b"200 OK", b"<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:"
                b"WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL></service>"
                b"</serviceList></device></root>")
    ext = http(b"200 OK", b"<NewExternalIPAddress>203.0.113.31</NewExternalIPAddress>")
    ok = http(b"200 OK", b"<ok/>")
    fault = http(b"500 Internal Server Error", b"<UPnPError><errorCode>725</errorCode>"
                 b"<errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError>")
    add("nat_upnp", b"\xff".join([ssdp, desc, b"", ssdp, ext, b"", ssdp, ok, b"", ssdp, ok]))
    add("nat_upnp", b"\xff".join([ssdp, desc, b"", ssdp, ext, b"", ssdp, fault, b"", ssdp, ok]))
    add("nat_upnp", ssdp)
    add("nat_upnp", desc)

    lines = [l.encode() for l in spec_lines("ledger.md", r"^(\{\"seq\":\d.*\})\s*$")]
    head = spec_lines("ledger.md", r"^(\{\"records\":\d.*\})\s*$")[0].encode() + b"\n"
    if len(head) % 2:
        head += b" "
    for l in lines:
        add("ledger_record", b"\x00" + l)
    for meta in (b'{"bpm":120,"title":"Kick"}', b'{"title":"Kick","bpm":120.5,"tags":["a","\\u00e9"],"x":null}',
                 b'{}', b'{"n":-0.0,"big":1e300,"s":"\\"\\\\\\n\\u0001"}'):
        add("ledger_record", b"\x01" + meta)
    log = b"".join(l + b"\n" for l in lines)
    hl = len(head) // 2
    add("ledger_log", bytes([hl]) + head + log)
    add("ledger_log", bytes([0x80 | hl]) + head + log)
    add("ledger_log", bytes([0x80 | hl]) + head + log + lines[0][:40])
    add("ledger_log", bytes([0x80 | 0x3f]) + lines[0] + b"\n")

    # Resume records: "PSRS", version 1, content ID, chunk count, bits, SHA-256 of the rest.
    for count, bits in ((10, b"\xff\xc0"), (16, b"\x0f\xf0"), (0, b""), (3, b"\xa0")):
        body = b"PSRS\x01" + bytes(range(32)) + struct.pack(">I", count) + bits
        add("resume_record", b"\x00" + body + hashlib.sha256(body).digest())
        add("resume_record", b"\x01" + body)

    stamp = {"size": 5, "mtime_ns": 1700000000123456789, "ctime_ns": 1700000000123456789,
             "inode": 1234, "dev": 2049}
    shares = {"version": 1, "shares": [
        {"content_id": "ab" * 32, "path": "/srv/music/kick.wav", "name": "kick.wav", "size": 5,
         "stamp": stamp},
        {"content_id": "cd" * 32, "path_hex": "2f746d702f6b69636bff2e776176", "name": "kick\ufffd.wav",
         "size": 5, "stamp": stamp}]}
    add("share_index", json.dumps(shares, indent=2).encode())

    state = {"version": 1, "node_id": "11" * 32,
             "contacts": [{"id": "22" * 32, "addr": "192.0.2.1:4001"},
                          {"id": "33" * 32, "addr": "[2001:db8::1]:8001"}],
             "provided": ["55" * 32]}
    add("node_state", json.dumps(state, indent=2).encode())

    for target, items in seeds.items():
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for data in items:
            with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
                f.write(data)
        print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: seed.py OUT_DIR")
    main(sys.argv[1])
