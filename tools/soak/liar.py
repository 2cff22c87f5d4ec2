#!/usr/bin/env python3
"""The soak's lying peer: a fake PeerShare peer that speaks the wire protocol
(protocol-spec/wire.md) as a seed of every file of the catalogue, with the real manifests but
corrupt chunk bytes. Honest downloaders must detect every bad chunk, ban the liar (ERROR
BANNED, wire.md section 7) and finish from honest peers with byte-identical files.

  python3 liar.py --identities 32 --catalogue catalogue.json --stats liar.json

The catalogue is a JSON list of {"path": ..., "content_id": ...}. It listens as --identities
peers at once, each with its own node ID and address (127.0.0.3 to 127.0.0.10, any port), and
prints `ready ADDR ADDR ...` once listening; downloaders learn an address as a peer hint of
local_request_file. Why several: a node bans a liar's address and node ID (wire.md
section 7), and then never talks to it again, so one identity would be tested once per node
process; with many, the downloads of a long run keep meeting liars they have not banned yet.
Every 5 s (and on SIGTERM) it writes its counters to --stats.

Each PIECE it sends is the real chunk with a few bytes flipped: the right length, so only
the chunk hash can catch it (a lie a careless downloader would store).
"""
import argparse
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerwire as w  # noqa: E402

MAX_CONNECTIONS = 256  # one thread each; more are refused at accept


class Liar:
    def __init__(self, catalogue):
        self.contents = {}  # content ID bytes -> (path, manifest bytes, chunk count)
        for c in catalogue:
            cid, m, size = w.manifest(c["path"])
            if cid != c["content_id"]:
                raise SystemExit(f"liar: {c['path']} hashes to {cid}, not {c['content_id']}")
            self.contents[bytes.fromhex(cid)] = (c["path"], m, -(-size // w.CHUNK_SIZE))
        self.lock = threading.Lock()
        self.stats = {"connections": 0, "refused_over_limit": 0, "handshakes": 0, "unknown_content": 0,
                      "manifest_pieces_sent": 0, "requests": 0, "corrupt_pieces_sent": 0,
                      "banned": 0, "protocol_violations_received": 0,
                      "closed_without_error": 0, "open": 0, "identities": 0}

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def serve(self, sock, node_id, port):
        self.count("open")
        r = w.FrameReader(sock)
        try:
            self._serve(sock, r, node_id, port)
        except (OSError, w.WireClosed):
            # Often a write failed because the node had closed after its ERROR BANNED, with our
            # pipelined PIECEs unread: look for the ERROR among what already arrived.
            self.count(self.drain(sock, r))
        finally:
            self.count("open", -1)
            sock.close()

    def drain(self, sock, r):
        """The counter for a connection that ended without us reading an ERROR: "banned" if
        an ERROR BANNED is still in the socket's receive queue, else "closed_without_error"."""
        try:
            sock.settimeout(0.5)
            while True:
                t, body = r.next()
                if t == w.ERROR and body[:2] == struct.pack(">H", w.ERR_BANNED):
                    return "banned"
        except (OSError, w.WireClosed):
            return "closed_without_error"

    def _serve(self, sock, r, node_id, port):
        sock.settimeout(130)  # the node's idle timeout is 120 s (wire.md section 9)
        rnd = random.Random()
        t, body = r.next()
        if t != w.HANDSHAKE or len(body) < 72:
            return
        cid = bytes(body[38:70])
        if cid not in self.contents:
            self.count("unknown_content")
            sock.sendall(w.error(w.ERR_UNKNOWN_CONTENT, "unknown content"))
            return
        self.count("handshakes")
        path, man, chunks = self.contents[cid]
        # A seed that knows the manifest: HANDSHAKE, then a full BITFIELD at once (rule 4).
        sock.sendall(w.handshake(node_id, cid, port) + w.bitfield(chunks, True))
        with open(path, "rb") as f:
            while True:
                t, body = r.next()
                if t == w.MANIFEST_REQUEST and len(body) == 8:
                    off, n = struct.unpack(">II", body)
                    data = man[off:off + n]
                    if data:
                        sock.sendall(w.frame(w.MANIFEST_DATA, struct.pack(">II", len(man), off) + data))
                        self.count("manifest_pieces_sent")
                elif t == w.INTERESTED:
                    sock.sendall(w.frame(w.UNCHOKE))
                elif t == w.REQUEST and len(body) == 4:
                    (i,) = struct.unpack(">I", body)
                    self.count("requests")
                    if i >= chunks:
                        continue
                    data = bytearray(os.pread(f.fileno(), w.CHUNK_SIZE, i * w.CHUNK_SIZE))
                    for _ in range(4):  # flip a few bytes: same length, wrong hash
                        data[rnd.randrange(len(data))] ^= 1 + rnd.randrange(255)
                    sock.sendall(w.frame(w.PIECE, struct.pack(">I", i) + bytes(data)))
                    self.count("corrupt_pieces_sent")
                elif t == w.ERROR:
                    code = struct.unpack_from(">H", body)[0] if len(body) >= 2 else -1
                    self.count({w.ERR_BANNED: "banned", w.ERR_PROTOCOL_VIOLATION: "protocol_violations_received"}
                               .get(code, f"error_{code}_received"))
                    return
                # KEEPALIVE, BITFIELD, HAVE, CANCEL, PEERS, NOT_INTERESTED...: nothing to do.


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=32)
    ap.add_argument("--catalogue", required=True)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()
    with open(a.catalogue) as f:
        liar = Liar(json.load(f))

    def save():
        with liar.lock:
            snap = dict(liar.stats)
        tmp = a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snap, f)
        os.replace(tmp, a.stats)

    def stop(*_):
        save()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)

    sel = selectors.DefaultSelector()
    addrs = []
    for i in range(a.identities):
        srv = socket.socket()
        srv.bind((f"127.0.0.{3 + i % 8}", 0))
        srv.listen(128)
        ip, port = srv.getsockname()
        sel.register(srv, selectors.EVENT_READ, (os.urandom(32), port))
        addrs.append(f"{ip}:{port}")
    liar.stats["identities"] = len(addrs)
    print("ready " + " ".join(addrs), flush=True)

    def saver():
        while True:
            time.sleep(5)
            save()
    threading.Thread(target=saver, daemon=True).start()
    while True:
        for key, _ in sel.select():
            c, _ = key.fileobj.accept()
            liar.count("connections")
            if liar.stats["open"] >= MAX_CONNECTIONS:
                liar.count("refused_over_limit")
                c.close()
                continue
            node_id, port = key.data
            threading.Thread(target=liar.serve, args=(c, node_id, port), daemon=True).start()


if __name__ == "__main__":
    main()
