#!/usr/bin/env python3
"""A minimal STUN responder for the NAT lab (RFC 5389 Binding, UDP only).

miniupnpd refuses to map ports while its external address is in a reserved range (the
lab's 203.0.113.0/24 is a documentation range), unless `ext_perform_stun=yes` and a STUN
server confirms that the path is unfiltered: it sends four Binding requests (with and without
RFC 3489 CHANGE-REQUEST) from four ports and wants every answer to report its own address and
port. This responder answers every Binding request from where it was received (it ignores
CHANGE-REQUEST: miniupnpd only checks the reported mapping), which is exactly what a
STUN server on the open internet in front of an unfiltered router would report.

    stun.py ADDR [PORT]    serve until killed (default port 3478)
"""
import socket
import struct
import sys

MAGIC = 0x2112A442


def response(req, peer):
    """The Binding success response to `req` from `peer`, or None if `req` is not a request."""
    if len(req) < 20:
        return None
    mtype, length, magic = struct.unpack("!HHI", req[:8])
    if mtype != 0x0001 or magic != MAGIC or 20 + length > len(req):
        return None
    txid = req[8:20]
    ip, port = peer
    xport = port ^ (MAGIC >> 16)
    xaddr = struct.unpack("!I", socket.inet_aton(ip))[0] ^ MAGIC
    # XOR-MAPPED-ADDRESS (0x0020): reserved 0, family 1 (IPv4), port, address.
    attr = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, xport, xaddr)
    return struct.pack("!HHI", 0x0101, len(attr), MAGIC) + txid + attr


def main():
    addr = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 3478
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        req, peer = s.recvfrom(2048)
        out = response(req, peer)
        if out is not None:
            s.sendto(out, peer)


if __name__ == "__main__":
    main()
