#!/usr/bin/env python3
"""The soak's garbage flooder: one process that throws malformed input at every node, on all
three of its doors, at a bounded rate, while the network works:

- DHT (UDP): random bytes, and datagrams of protocol-spec/vectors (valid and invalid ones)
  with a random txid and sender ID, then mutated (bytes flipped, cut, extended, counts
  inflated), at --udp-rate datagrams per second in total, from a pool of source ports on
  127.0.0.2 (a "machine" of its own) that is renewed as it goes;
- wire (TCP): random bytes, half frames, absurd lengths, HTTP, a HANDSHAKE for a real or an
  unknown content followed by invalid or mutated frames, and silent connections held open
  (the node should close them itself: wire.md section 9, handshake timeout);
- API (TCP): HTTP requests, non-objects, unbalanced or deeply nested JSON, bad UTF-8, requests
  cut off by a half-close, mutated harmless requests. Nothing it sends can be a command that
  changes a node (only status-like commands are mutated).

  python3 flood.py --config flood.json --stats flood.json.out

The config: {"targets": [{"dht": "127.0.0.1:P", "api": "127.0.0.1:A"}, ...],
"content_ids": [hex, ...], "udp_rate": N, "wire_rate": N, "api_rate": N} (0 turns a part
off). Counters are
written to --stats every 5 s and on SIGTERM.
"""
import argparse
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peerwire as w  # noqa: E402

VECTORS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "protocol-spec", "vectors")
SOURCE_IP = "127.0.0.2"
UDP_SOCKETS = 16
MAX_HELD = 24  # silent wire connections held open at once


def load_vectors(*names):
    out = []
    for name in names:
        with open(os.path.join(VECTORS, name)) as f:
            for line in f:
                # "NAME HEX" (valid vectors) or "NAME ERROR HEX" (invalid ones)
                parts = line.split()
                if len(parts) in (2, 3) and not line.startswith("#"):
                    try:
                        out.append(bytes.fromhex(parts[-1]))
                    except ValueError:
                        pass
    return out


def mutate(rnd, data, max_len):
    """A few random edits of DATA: flip bytes, cut, extend, duplicate a slice, inflate a byte."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        if op == 0 and b:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        elif op == 1 and b:
            del b[rnd.randrange(len(b)):]
        elif op == 2:
            b += os.urandom(rnd.randint(1, 64))
        elif op == 3 and len(b) > 2:
            i = rnd.randrange(len(b) - 1)
            j = rnd.randint(i + 1, len(b))
            b[j:j] = b[i:j]
        elif op == 4 and b:
            b[rnd.randrange(len(b))] = rnd.choice([0x00, 0x7f, 0x80, 0xff])
    return bytes(b[:max_len])


class Flooder:
    def __init__(self, cfg):
        self.cfg = cfg
        self.targets = cfg["targets"]
        self.cids = [bytes.fromhex(c) for c in cfg["content_ids"]]
        self.dht_valid = load_vectors("dht.txt")
        self.dht_invalid = load_vectors("dht-invalid.txt")
        self.wire_valid = load_vectors("wire.txt")
        self.wire_invalid = load_vectors("wire-invalid.txt")
        self.lock = threading.Lock()
        self.stats = {k: 0 for k in (
            "udp_sent", "udp_bytes", "udp_replies", "udp_send_errors",
            "wire_connections", "wire_connect_failed", "wire_answered", "wire_closed_by_node",
            "wire_held", "wire_held_closed_by_node", "wire_held_still_open_at_release",
            "api_connections", "api_connect_failed", "api_replies", "api_http_refusals",
            "api_no_reply")}

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    # ---------------------------------------------------------------------------- UDP
    def datagram(self, rnd):
        r = rnd.random()
        if r < 0.25:
            return os.urandom(rnd.randint(0, 1400))
        if r < 0.45:
            return rnd.choice(self.dht_invalid)
        # A valid message with a fresh txid (bytes 5..13) and sender ID (13..45), often mutated.
        b = bytearray(rnd.choice(self.dht_valid))
        if len(b) >= 45:
            b[5:45] = os.urandom(40)
        return bytes(b) if r < 0.6 else mutate(rnd, b, 1400)

    def udp_loop(self):
        rnd = random.Random()
        socks = [self._udp_socket() for _ in range(UDP_SOCKETS)]
        rate = float(self.cfg["udp_rate"])
        t0, sent, renewed = time.monotonic(), 0, time.monotonic()
        while True:
            now = time.monotonic()
            due = int((now - t0) * rate) - sent
            for _ in range(min(due, 200)):
                t = rnd.choice(self.targets)["dht"].rsplit(":", 1)
                d = self.datagram(rnd)
                try:
                    rnd.choice(socks).sendto(d, (t[0], int(t[1])))
                    self.count("udp_sent")
                    self.count("udp_bytes", len(d))
                except OSError:
                    self.count("udp_send_errors")
                sent += 1
            for s in socks:  # answers (PONG, NODES, ERROR...) to our garbage: just count them
                while True:
                    try:
                        s.recv(2048)
                        self.count("udp_replies")
                    except (BlockingIOError, OSError):
                        break
            if now - renewed > 2:  # a new source port now and then: new entries in rate limiters
                renewed = now
                i = rnd.randrange(len(socks))
                socks[i].close()
                socks[i] = self._udp_socket()
            time.sleep(0.01)

    @staticmethod
    def _udp_socket():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((SOURCE_IP, 0))
        s.setblocking(False)
        return s

    # ---------------------------------------------------------------------------- wire
    def wire_payload(self, rnd):
        """Bytes for one garbage connection to a wire port; None means: connect and stay silent."""
        kind = rnd.randrange(8)
        hs = w.handshake(os.urandom(32), rnd.choice(self.cids) if self.cids and rnd.random() < 0.7
                         else os.urandom(32), rnd.randrange(65536))
        if kind == 0:
            return os.urandom(rnd.randint(1, 4096))
        if kind == 1:  # a frame header promising more than will ever come
            return struct.pack(">IB", rnd.choice([5, 1000, 1 << 20, w.MAX_FRAME_LEN]), w.PIECE) + os.urandom(3)
        if kind == 2:
            return struct.pack(">I", rnd.choice([0, w.MAX_FRAME_LEN + 1, 0xFFFFFFFF])) + os.urandom(8)
        if kind == 3:
            return b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        if kind == 4:  # handshake, then an invalid frame from the spec's vectors
            return hs + rnd.choice(self.wire_invalid)
        if kind == 5:  # handshake, then valid-looking frames out of order, mutated
            return hs + b"".join(mutate(rnd, rnd.choice(self.wire_valid), 4096) for _ in range(rnd.randint(1, 5)))
        if kind == 6:
            return mutate(rnd, hs, 200)
        return None

    def wire_loop(self):
        rnd = random.Random()
        held = []  # (socket, release time)
        period = 1.0 / float(self.cfg["wire_rate"])
        while True:
            t = rnd.choice(self.targets)["dht"].rsplit(":", 1)
            payload = self.wire_payload(rnd)
            if payload is None and len(held) >= MAX_HELD:
                payload = os.urandom(16)
            try:
                s = socket.create_connection((t[0], int(t[1])), timeout=2, source_address=(SOURCE_IP, 0))
                self.count("wire_connections")
            except OSError:
                self.count("wire_connect_failed")
                s = None
            if s is not None and payload is None:
                s.setblocking(False)
                held.append((s, time.monotonic() + rnd.uniform(15, 40)))
                self.count("wire_held")
            elif s is not None:
                try:
                    s.sendall(payload)
                    s.settimeout(0.2)
                    got = s.recv(4096)
                    self.count("wire_answered" if got else "wire_closed_by_node")
                except socket.timeout:
                    pass
                except OSError:
                    self.count("wire_closed_by_node")
                s.close()
            # Release held connections whose time is up; note whether the node closed them.
            now = time.monotonic()
            for s, until in list(held):
                closed = False
                try:
                    closed = s.recv(4096) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                if closed or now > until:
                    self.count("wire_held_closed_by_node" if closed else "wire_held_still_open_at_release")
                    s.close()
                    held.remove((s, until))
            time.sleep(period)

    # ---------------------------------------------------------------------------- API
    HARMLESS = [b'{"type":"status"}', b'{"type":"transfer_status","payload":{}}',
                b'{"type":"routing_table"}', b'{"type":"local_list_content","payload":{}}']

    def api_payload(self, rnd):
        """(bytes, half_close) for one garbage API connection."""
        kind = rnd.randrange(9)
        if kind == 0:
            body = rnd.choice(self.HARMLESS)
            head = (b" / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n")
            return rnd.choice([b"GET", b"POST", b"OPTIONS", b"PUT"]) + head + body, False
        if kind == 1:
            return rnd.choice([b"hello", b"[1,2]", b"42", b'"x"', b"null"]) + b"\n", False
        if kind == 2:
            return b'{"a":[1}', False
        if kind == 3:
            return rnd.choice(self.HARMLESS)[:rnd.randint(1, 12)], True
        if kind == 4:
            return b'{"type":"status","x":"\xff\xfe\xc0\xaf"}', False
        if kind == 5:
            return b'{"a":' + b"[" * rnd.randint(100, 50000), True
        if kind == 6:
            unknown = os.urandom(8).hex().encode()
            return b'{"type":"' + unknown + b'","payload":{"s":"' + b"A" * rnd.randint(1, 65536) + b'"}}', False
        if kind == 7:
            return os.urandom(rnd.randint(1, 2048)), True
        return mutate(rnd, rnd.choice(self.HARMLESS), 200), True

    def api_loop(self):
        rnd = random.Random()
        period = 1.0 / float(self.cfg["api_rate"])
        while True:
            t = rnd.choice(self.targets)["api"].rsplit(":", 1)
            payload, half_close = self.api_payload(rnd)
            try:
                s = socket.create_connection((t[0], int(t[1])), timeout=2)
                self.count("api_connections")
            except OSError:
                self.count("api_connect_failed")
                time.sleep(period)
                continue
            try:
                s.sendall(payload)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
                s.settimeout(1.0)
                got = s.recv(4096)
                if got.startswith(b"HTTP/1.1 400"):
                    self.count("api_http_refusals")
                self.count("api_replies" if got else "api_no_reply")
            except OSError:
                self.count("api_no_reply")
            finally:
                s.close()
            time.sleep(period)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()
    with open(a.config) as f:
        fl = Flooder(json.load(f))

    def save():
        with fl.lock:
            snap = dict(fl.stats)
        with open(a.stats + ".tmp", "w") as f:
            json.dump(snap, f)
        os.replace(a.stats + ".tmp", a.stats)

    def stop(*_):
        save()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    for loop, rate in ((fl.wire_loop, fl.cfg["wire_rate"]), (fl.api_loop, fl.cfg["api_rate"])):
        if rate > 0:  # a rate of 0 turns that part off
            threading.Thread(target=loop, daemon=True).start()

    def saver():
        while True:
            time.sleep(5)
            save()
    threading.Thread(target=saver, daemon=True).start()
    print("ready", flush=True)
    if fl.cfg["udp_rate"] > 0:
        fl.udp_loop()
    else:
        threading.Event().wait()


if __name__ == "__main__":
    main()
