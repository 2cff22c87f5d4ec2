#!/usr/bin/env python3
"""pypeer: a small, readable PeerShare peer, written from protocol-spec/ alone.

It joins the DHT (dht.md), serves one file over the wire protocol (wire.md), inside the
secure session every wire connection runs (secure.md), and downloads files from other peers,
verifying everything against the content ID (content.md). The standard library, plus two
vetted packages for the cryptography: `cryptography` (Ed25519) and `noiseprotocol` (Noise;
`pip install noiseprotocol`, which brings `cryptography`). It is teaching material: read it top to bottom beside the spec; every section
names the spec section it implements.

    pypeer.py serve FILE [--port P] [--bootstrap HOST:PORT]   prints "content: ID", "ready"
    pypeer.py get ID --out DIR [--port P] --bootstrap HOST:PORT

It keeps things simple where the spec leaves a choice: one routing list instead of buckets,
one download connection at a time, every interested peer unchoked, no super-seeding.
"""
import argparse
import hashlib
import hmac
import ipaddress
import os
import random
import socket
import struct
import sys
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import NoiseInvalidMessage

# ---------------------------------------------------------------------------------------
# Encoding (overview.md section 4) and decode errors (overview.md section 9)


class DecodeError(Exception):
    """A malformed message; `kind` is the spec's name for the error."""

    def __init__(self, kind, what=""):
        super().__init__(f"{kind}: {what}")
        self.kind = kind


class Reader:
    """Reads fields from bytes, checking the length before every read (decoders are total)."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def left(self):
        return len(self.buf) - self.pos

    def take(self, n, field="field"):
        if self.left() < n:
            raise DecodeError("UnexpectedEnd", field)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, f="u8"):
        return self.take(1, f)[0]

    def u16(self, f="u16"):
        return struct.unpack(">H", self.take(2, f))[0]

    def u32(self, f="u32"):
        return struct.unpack(">I", self.take(4, f))[0]

    def u64(self, f="u64"):
        return struct.unpack(">Q", self.take(8, f))[0]

    def addr(self, f="addr"):
        family = self.u8(f)
        if family == 4:
            ip = ipaddress.IPv4Address(self.take(4, f))
        elif family == 6:
            ip = ipaddress.IPv6Address(self.take(16, f))
            if ip.ipv4_mapped:
                raise DecodeError("InvalidValue", "IPv4-mapped address as family 6")
        else:
            raise DecodeError("BadAddressFamily", f)
        return (str(ip), self.u16(f))

    def finish(self):
        if self.left():
            raise DecodeError("TrailingBytes", str(self.left()))


def enc_addr(addr):
    """An (ip, port) as 7 or 19 bytes; IPv4-mapped IPv6 travels as IPv4."""
    ip = ipaddress.ip_address(addr[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    family = 4 if ip.version == 4 else 6
    return bytes([family]) + ip.packed + struct.pack(">H", addr[1])


def canonical(addr):
    """The address as the spec compares addresses: IPv4-mapped IPv6 as IPv4."""
    ip = ipaddress.ip_address(addr[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (str(ip), addr[1])


# ---------------------------------------------------------------------------------------
# The manifest (content.md sections 2 and 3): its SHA-256 is the content ID

def chunk_size_for(size):
    """content.md section 3: 256 KiB up to 2 GiB, then larger, at most 1 MiB."""
    if size <= 1 << 31:
        return 262144
    need, cs = -(-size // 8192), 1
    while cs < need:
        cs *= 2
    return min(cs, 1 << 20)


class Manifest:
    def __init__(self, raw):
        r = Reader(raw)
        if r.take(4, "magic") != b"PSMF" or r.u8("version") != 1:
            raise DecodeError("InvalidValue", "not a version 1 manifest")
        self.size, self.chunk_size, self.count = r.u64(), r.u32(), r.u32()
        if self.chunk_size & (self.chunk_size - 1) or not 16384 <= self.chunk_size <= 1 << 20:
            raise DecodeError("InvalidValue", "chunk_size")
        if self.count != -(-self.size // self.chunk_size) or self.count > 1 << 20:
            raise DecodeError("InvalidValue", "chunk_count")
        self.file_sha = r.take(32)
        if r.left() < 32 * self.count:
            raise DecodeError("UnexpectedEnd", "chunk hashes")
        self.hashes = [r.take(32) for _ in range(self.count)]
        r.finish()
        self.raw, self.id = raw, hashlib.sha256(raw).digest()

    def chunk_len(self, i):
        return min(self.chunk_size, self.size - i * self.chunk_size)

    @staticmethod
    def of_file(path):
        size = os.path.getsize(path)
        cs = chunk_size_for(size)
        whole, hashes = hashlib.sha256(), []
        with open(path, "rb") as f:
            while True:
                chunk = f.read(cs)
                if not chunk:
                    break
                whole.update(chunk)
                hashes.append(hashlib.sha256(chunk).digest())
        raw = b"PSMF\x01" + struct.pack(">QII", size, cs, len(hashes)) + whole.digest()
        return Manifest(raw + b"".join(hashes))


# ---------------------------------------------------------------------------------------
# The DHT (dht.md): a 45-byte header, then a body that depends on the type

PING, PONG, FIND_NODE, NODES, GET_PROVIDERS, PROVIDERS, ANNOUNCE, ACK = range(1, 9)
PROVE, PROOF = 0x13, 0x14  # proof of identity (section 4.10, 4.11)
DHT_ERROR = 0x7F
REQUESTS = {PING, FIND_NODE, GET_PROVIDERS, ANNOUNCE, PROVE, 0x09, 0x0B, 0x0D, 0x0F}
RESPONSES = {PONG, NODES, PROVIDERS, ACK, PROOF, DHT_ERROR, 0x0A, 0x0C, 0x0E, 0x10}
BAD_TOKEN = 2
K, ALPHA, TIMEOUT = 20, 3, 2.0


def encode_dgram(mtype, txid, sender, body=b""):
    return b"PS\x01" + bytes([mtype, 0]) + struct.pack(">Q", txid) + sender + body


def decode_dgram(buf):
    """(type, txid, sender, fields) of a datagram; DecodeError if malformed (section 2, 4)."""
    if len(buf) > 1232:
        raise DecodeError("TooLarge")
    r = Reader(buf)
    if r.take(2, "magic") != b"PS":
        raise DecodeError("BadMagic")
    if r.u8("version") != 1:
        raise DecodeError("UnsupportedVersion")
    mtype, flags, txid, sender = r.u8(), r.u8(), r.u64(), r.take(32)
    f = {}
    if mtype in (PING, ACK):
        pass
    elif mtype == PONG:
        f["observed"] = r.addr()
    elif mtype in (FIND_NODE, GET_PROVIDERS):
        f["target"] = r.take(32)
    elif mtype == NODES:
        f["contacts"] = read_contacts(r)
    elif mtype == PROVIDERS:
        f["token"] = r.take(16)
        n = r.u8()
        if n > 50:
            raise DecodeError("LengthTooLarge", "provider_count")
        if r.left() < 7 * n:  # pre-check with the smallest address (overview.md section 7)
            raise DecodeError("UnexpectedEnd", "provider_count")
        f["providers"] = [r.addr() for _ in range(n)]
        f["contacts"] = read_contacts(r)
        if flags & 0x02:  # rendezvous records (nat.md): read and ignored here
            m = r.u8()
            if m > 20:
                raise DecodeError("LengthTooLarge", "rendezvous_count")
            for _ in range(m):
                r.addr(), r.take(32), r.addr()
        if flags & 0x04:  # provider IDs (section 4.6): never asked for here, read if sent
            f["provider_ids"] = [r.take(32) for _ in range(n)]
    elif mtype == PROVE:
        f["nonce"], f["addr_bytes"] = r.take(32), None
        start = r.pos
        r.addr()
        f["addr_bytes"] = r.buf[start:r.pos]  # signed as it was encoded (section 4.11)
    elif mtype == PROOF:
        f["public"], f["signature"] = r.take(32), r.take(64)
    elif mtype == ANNOUNCE:
        f["key"], f["token"], f["port"] = r.take(32), r.take(16), r.u16()
        if flags & 0x02:
            r.addr()
    elif mtype == DHT_ERROR:
        f["code"], n = r.u16(), r.u8()
        if n > 200:
            raise DecodeError("LengthTooLarge", "text_len")
        try:
            f["text"] = r.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("InvalidValue", "text") from None
    else:
        raise DecodeError("UnknownMessageType", hex(mtype))  # NAT messages: not spoken here
    r.finish()
    return mtype, txid, sender, f


def read_contacts(r):
    n = r.u8()
    if n > K:
        raise DecodeError("LengthTooLarge", "contact_count")
    if r.left() < 39 * n:
        raise DecodeError("UnexpectedEnd", "contact_count")
    return [(r.take(32), r.addr()) for _ in range(n)]


def enc_contacts(contacts):
    return bytes([len(contacts)]) + b"".join(i + enc_addr(a) for i, a in contacts)


def distance(a, b):
    return int.from_bytes(bytes(x ^ y for x, y in zip(a, b)), "big")


class Dht:
    """A DHT node (dht.md): answers requests, keeps contacts, looks up and announces."""

    def __init__(self, sock, identity):
        self.sock, self.id, self.identity = sock, identity.node_id, identity
        self.contacts = {}  # id -> address; a flat list, closest chosen by XOR (section 6)
        self.providers = {}  # key -> {address: expiry} (section 10)
        self.serving = set()  # keys we provide ourselves
        self.pending = {}  # txid -> [address, event, answer]
        self.secrets = [os.urandom(32), os.urandom(32)]  # current, previous (section 9)
        self.rotated = time.monotonic()
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def token(self, addr, secret):
        ip = ipaddress.ip_address(addr[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return hmac.new(secret, ip.packed + struct.pack(">H", addr[1]), hashlib.sha256).digest()[:16]

    def closest(self, target, exclude=None):
        with self.lock:
            items = [(i, a) for i, a in self.contacts.items() if i != exclude]
        return sorted(items, key=lambda c: distance(c[0], target))[:K]

    def learn(self, node_id, addr):
        # A simplification: every node that answers is taken in, without the PROVE that dht.md
        # section 6.1 asks for first (this peer answers PROVEs, so it gets into real tables).
        if node_id != self.id:
            with self.lock:
                if node_id in self.contacts or len(self.contacts) < 1000:
                    self.contacts[node_id] = canonical(addr)

    def serve(self):
        while True:
            buf, addr = self.sock.recvfrom(2048)
            addr = canonical(addr[:2])
            try:
                mtype, txid, sender, f = decode_dgram(buf)
            except DecodeError:
                continue  # malformed: dropped without an answer (overview.md section 7)
            if mtype in RESPONSES:
                with self.lock:
                    p = self.pending.get(txid)
                if p and p[0] == addr:  # txid and address must both match (section 3)
                    p[2] = (mtype, sender, f)
                    p[1].set()
                continue
            # Requesters are not added to the contacts: only nodes that answered one of our
            # requests are (a simplification; dht.md section 6 also takes requesters, after
            # checking them, section 13.3). A one-off client would be a dead contact.
            answer = self.answer(mtype, addr, sender, f)
            if answer is not None:
                self.sock.sendto(encode_dgram(answer[0], txid, self.id, answer[1]), addr)

    def answer(self, mtype, addr, sender, f):
        if time.monotonic() - self.rotated > 300:  # tokens rotate every 5 minutes
            self.secrets, self.rotated = [os.urandom(32), self.secrets[0]], time.monotonic()
        if mtype == PING:
            return PONG, enc_addr(addr)
        if mtype == PROVE:  # prove we hold our ID's key (section 4.11)
            signed = b"peershare-dht-proof:" + f["nonce"] + self.id + sender + f["addr_bytes"]
            return PROOF, self.identity.public + self.identity.key.sign(signed)
        if mtype == FIND_NODE:
            return NODES, enc_contacts(self.closest(f["target"], exclude=sender))
        if mtype == GET_PROVIDERS:
            now = time.monotonic()
            with self.lock:
                found = [a for a, exp in self.providers.get(f["target"], {}).items() if exp > now]
            if f["target"] in self.serving:  # ourselves, first: "0.0.0.0", port 0 (section 4.6)
                found.insert(0, ("0.0.0.0", 0))
            body = self.token(addr, self.secrets[0]) + bytes([len(found[:50])])
            body += b"".join(enc_addr(a) for a in found[:50])
            return PROVIDERS, body + enc_contacts(self.closest(f["target"], exclude=sender)[:10])
        if mtype == ANNOUNCE:
            if not any(hmac.compare_digest(f["token"], self.token(addr, s)) for s in self.secrets):
                text = b"bad token"
                return DHT_ERROR, struct.pack(">HB", BAD_TOKEN, len(text)) + text
            port = f["port"] or addr[1]
            with self.lock:
                self.providers.setdefault(f["key"], {})[(addr[0], port)] = time.monotonic() + 7200
            return ACK, b""
        return None  # a request type this peer does not speak (NAT): no answer

    def request(self, addr, mtype, body=b""):
        """Sends a request and waits for its answer: (type, sender, fields), or None."""
        txid, done = random.getrandbits(64), threading.Event()
        slot = [canonical(addr), done, None]
        with self.lock:
            self.pending[txid] = slot
        self.sock.sendto(encode_dgram(mtype, txid, self.id, body), addr)
        done.wait(TIMEOUT)
        with self.lock:
            self.pending.pop(txid, None)
        if slot[2] is not None:
            self.learn(slot[2][1], addr)
        return slot[2]

    def bootstrap(self, addr):
        """Joins through one known node: a lookup of our own ID (section 11)."""
        if self.request(addr, PING):
            self.lookup(self.id, FIND_NODE)

    def lookup(self, target, mtype):
        """Iterative lookup (section 7): ask the closest unasked, ALPHA at a time, until the
        K closest known have answered. Returns (providers, {node id: (address, token)})."""
        asked, providers, tokens = set(), set(), {}
        while True:
            batch = [c for c in self.closest(target) if c[0] not in asked][:ALPHA]
            if not batch:
                return providers, tokens
            results = [None] * len(batch)

            def ask(n, c):
                results[n] = self.request(c[1], mtype, target)

            threads = [threading.Thread(target=ask, args=(n, c)) for n, c in enumerate(batch)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for (node_id, addr), res in zip(batch, results):
                asked.add(node_id)
                if res is None or res[0] not in (NODES, PROVIDERS) or res[1] != node_id:
                    with self.lock:
                        self.contacts.pop(node_id, None)  # no (right) answer: forget it
                    continue
                for cid, caddr in res[2].get("contacts", []):
                    self.learn(cid, caddr)
                if res[0] == PROVIDERS:
                    tokens[node_id] = (addr, res[2]["token"])
                    for p in res[2]["providers"]:
                        if ipaddress.ip_address(p[0]).is_unspecified:  # the responder itself
                            p = (addr[0], p[1] or addr[1])
                        if p[1] and not ipaddress.ip_address(p[0]).is_multicast:
                            providers.add(p)

    def announce(self, key, port):
        """GET_PROVIDERS lookup, then ANNOUNCE to the K closest that gave a token (section 10)."""
        _, tokens = self.lookup(key, GET_PROVIDERS)
        close = sorted(tokens.items(), key=lambda t: distance(t[0], key))[:K]
        for _, (addr, token) in close:
            self.request(addr, ANNOUNCE, key + token + struct.pack(">H", port))
        return len(close)


# ---------------------------------------------------------------------------------------
# The wire protocol (wire.md): frames of a 4-byte length, a type byte and a body

(KEEPALIVE, HANDSHAKE, METADATA, MREQ, MDATA, BITFIELD, HAVE, REQUEST, PIECE, CANCEL, REJECT,
 CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, PEERS, ERROR, PROBE, RELAY, RELAY_OK) = range(20)
NAMES = ["KEEPALIVE", "HANDSHAKE", "METADATA", "MANIFEST_REQUEST", "MANIFEST_DATA", "BITFIELD",
         "HAVE", "REQUEST", "PIECE", "CANCEL", "REJECT", "CHOKE", "UNCHOKE", "INTERESTED",
         "NOT_INTERESTED", "PEERS", "ERROR", "PROBE", "RELAY", "RELAY_OK"]
# Largest body of each type (section 1); exact sizes for fixed layouts (section 2).
MAX_BODY = [0, 1024, 256, 8, 262152, 131076, 4, 4, 1048580, 4, 5, 0, 0, 0, 0, 2551, 203, 8, 40, 0]
FIXED = {KEEPALIVE, MREQ, HAVE, REQUEST, CANCEL, REJECT, CHOKE, UNCHOKE, INTERESTED,
         NOT_INTERESTED, PROBE, RELAY, RELAY_OK}
MAX_FRAME_LEN = (1 << 20) + 16
UNKNOWN_CONTENT, PROTOCOL_VIOLATION, BANNED, COMPLETE = 1, 2, 3, 6
NOT_AVAILABLE, CHOKED = 1, 2


def frame(mtype, body=b""):
    return struct.pack(">IB", len(body) + 1, mtype) + body


def error_frame(code, text):
    t = text.encode()[:200]
    return frame(ERROR, struct.pack(">HB", code, len(t)) + t)


def check_header(buf):
    """Rejects a bad frame from its first 4 or 5 bytes, before its body arrives (section 2)."""
    if len(buf) >= 4:
        n = struct.unpack(">I", buf[:4])[0]
        if n == 0:
            raise DecodeError("InvalidValue", "length 0")
        if n > MAX_FRAME_LEN:
            raise DecodeError("TooLarge", "length")
        if len(buf) >= 5:
            t = buf[4]
            if t >= len(NAMES):
                raise DecodeError("UnknownMessageType", hex(t))
            if n - 1 > MAX_BODY[t]:
                raise DecodeError("TrailingBytes" if t in FIXED else "TooLarge", NAMES[t])


def decode_body(t, body):
    """The fields of one frame (section 4), strictly; the frame's length is already checked."""
    r, f = Reader(body), {}
    if t == HANDSHAKE:
        if r.take(4, "magic") != b"PSWP":
            raise DecodeError("InvalidValue", "magic")
        if r.u8("version") != 1:
            raise DecodeError("UnsupportedVersion")
        r.u8("flags")
        f["node"], f["content"], f["port"] = r.take(32), r.take(32), r.u16()
    elif t == METADATA:
        n = r.u8()
        if n == 0:
            raise DecodeError("InvalidValue", "empty name")
        try:
            f["name"] = r.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("InvalidValue", "name") from None
    elif t == MREQ:
        f["offset"], f["length"] = r.u32(), r.u32()
        if f["length"] == 0:
            raise DecodeError("InvalidValue", "length 0")
        if f["length"] > 262144:
            raise DecodeError("LengthTooLarge", "length")
    elif t == MDATA:
        f["total"], f["offset"] = r.u32(), r.u32()
        f["data"] = r.take(r.left())
        if f["total"] > (32 << 20) + 64:
            raise DecodeError("LengthTooLarge", "total_len")
        if not f["data"] or f["offset"] + len(f["data"]) > f["total"]:
            raise DecodeError("InvalidValue", "data")
    elif t == BITFIELD:
        n = f["count"] = r.u32()
        if n > 1 << 20:
            raise DecodeError("LengthTooLarge", "chunk_count")
        bits = f["bits"] = r.take((n + 7) // 8, "bits")
        if n % 8 and bits[-1] & (0xFF >> (n % 8)):
            raise DecodeError("InvalidValue", "spare bit set")
    elif t in (HAVE, REQUEST, CANCEL):
        f["chunk"] = r.u32()
    elif t == PIECE:
        f["chunk"], f["data"] = r.u32(), r.take(r.left())
        if not f["data"]:
            raise DecodeError("InvalidValue", "empty PIECE")
    elif t == REJECT:
        f["chunk"], f["reason"] = r.u32(), r.u8()
    elif t == PEERS:  # section 4.16: each entry an address, then the node ID it proved
        n = r.u8()
        if n > 50:
            raise DecodeError("LengthTooLarge", "peer_count")
        if r.left() < 39 * n:  # as if every entry were IPv4: 7 + 32 bytes
            raise DecodeError("UnexpectedEnd", "peer_count")
        f["peers"] = [(r.addr("peer"), r.take(32, "peer_id")) for _ in range(n)]
    elif t == ERROR:
        f["code"], n = r.u16(), r.u8()
        if n > 200:
            raise DecodeError("LengthTooLarge", "text_len")
        try:
            f["text"] = r.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("InvalidValue", "text") from None
    elif t == PROBE:
        r.take(8)
    elif t == RELAY:
        r.take(40)
    r.finish()
    return f


# ---------------------------------------------------------------------------------------
# The secure session (secure.md): Noise XX with an identity proof, then records


NOISE_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE = b"PeerShare PSWP 3"
HELLO = b"PSWP\x03"  # msg1's payload: the protocol and version 3 (section 2)
SIG_CONTEXT = b"peershare-noise-static-key:"
MSG1, MSG2, MSG3 = 37, 194, 162  # the handshake messages' exact lengths
# The proof's flags: 0, no AES-GCM offered, so every session's records are ChaChaPoly, which
# the Noise library's transport seals and opens (section 3: AES-GCM needs both to offer it).
FLAGS = b"\x00"
MAX_PLAIN = 65535 - 16  # a record's plaintext (section 3)


class Identity:
    """An Ed25519 identity (section 1) and the Noise static key it vouches for."""

    def __init__(self):
        raw = serialization.Encoding.Raw
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        self.node_id = hashlib.sha256(self.public).digest()
        static = X25519PrivateKey.generate()
        self.static_private = static.private_bytes(
            raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        static_public = static.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        # The identity proof: version 3, flags, identity key, signature over the static key.
        self.proof = b"\x03" + FLAGS + self.public + self.key.sign(SIG_CONTEXT + static_public)


def check_proof(proof, remote_static):
    """The node ID an identity proof proves for the static key Noise authenticated."""
    if len(proof) != 98 or proof[0] != 3:
        raise Violation("malformed identity proof")
    # proof[1] is the peer's flags: whatever it offers, ours are 0, so the records are ChaChaPoly.
    try:
        Ed25519PublicKey.from_public_bytes(proof[2:34]).verify(
            proof[34:], SIG_CONTEXT + remote_static)
    except InvalidSignature:
        raise Violation("identity proof: the signature does not verify")
    return hashlib.sha256(proof[2:34]).digest()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise OSError("the peer closed the connection")
        data += more
    return data


def secure_handshake(sock, me, initiator):
    """Runs the handshake (section 2); returns (the Noise connection, the peer's node ID)."""
    n = NoiseConnection.from_name(NOISE_NAME)
    n.set_as_initiator() if initiator else n.set_as_responder()
    n.set_keypair_from_private_bytes(Keypair.STATIC, me.static_private)
    n.set_prologue(PROLOGUE)
    n.start_handshake()

    def send(msg):
        sock.sendall(struct.pack(">H", len(msg)) + bytes(msg))

    def recv(length):
        head = recv_exact(sock, 2)
        if head == b"\x00\x00":  # a plaintext version 1 frame (section 4)
            raise Violation("the peer speaks wire protocol version 1 (plaintext)")
        if struct.unpack(">H", head)[0] != length:
            raise Violation("a handshake message of the wrong size")
        return recv_exact(sock, length)

    if initiator:
        send(n.write_message(HELLO))
        hs = n.noise_protocol.handshake_state  # kept: the library drops it when done
        peer = check_proof(bytes(n.read_message(recv(MSG2))), hs.rs.public_bytes)
        send(n.write_message(me.proof))
    else:
        if bytes(n.read_message(recv(MSG1))) != HELLO:
            raise Violation("HELLO does not name PSWP version 3")
        send(n.write_message(me.proof))
        hs = n.noise_protocol.handshake_state
        peer = check_proof(bytes(n.read_message(recv(MSG3))), hs.rs.public_bytes)
    return n, peer


class Conn:
    """One TCP connection, its secure session done, read frame by frame: records (a 2-byte
    length and the ChaCha20-Poly1305 ciphertext, secure.md section 3) are opened into `buf`."""

    def __init__(self, sock, noise, peer):
        self.sock, self.noise, self.peer, self.buf, self.raw = sock, noise, peer, b"", b""
        self.keepalive, self.last_rx = False, time.monotonic()

    def talking(self):
        """After the handshake: KEEPALIVE after 30 s of silence, close after 120 s (section 9)."""
        self.keepalive = True
        self.sock.settimeout(30)

    def send(self, data):
        out = b""
        for i in range(0, len(data), MAX_PLAIN):
            record = self.noise.encrypt(bytes(data[i:i + MAX_PLAIN]))
            out += struct.pack(">H", len(record)) + record
        self.sock.sendall(out)

    def open_records(self):
        """Moves every whole record of `raw` into `buf`, opened; a bad one ends the session."""
        while len(self.raw) >= 2:
            n = struct.unpack(">H", self.raw[:2])[0]
            if n < 16:
                raise OSError("a record shorter than its tag")
            if len(self.raw) < 2 + n:
                return
            try:
                self.buf += self.noise.decrypt(bytes(self.raw[2:2 + n]))
            except NoiseInvalidMessage:
                raise OSError("a record failed authentication: closing")
            self.raw = self.raw[2 + n:]

    def recv(self):
        """(type, fields) of the next frame; None when the peer closed; DecodeError."""
        while True:
            check_header(self.buf)
            if len(self.buf) >= 5:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    t, body, self.buf = self.buf[4], self.buf[5:4 + n], self.buf[4 + n:]
                    return t, decode_body(t, body)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if not self.keepalive or time.monotonic() - self.last_rx >= 120:
                    raise
                self.send(frame(KEEPALIVE))
                continue
            if not data:
                return None
            self.last_rx = time.monotonic()
            self.raw += data
            self.open_records()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def bitfield(count, have):
    bits = bytearray((count + 7) // 8)
    for i in have:
        bits[i // 8] |= 0x80 >> (i % 8)
    return frame(BITFIELD, struct.pack(">I", count) + bytes(bits))


class Violation(Exception):
    """The peer broke a rule of wire.md section 3: ERROR PROTOCOL_VIOLATION, then close."""


class Seeder:
    """Serves one complete file to every peer that asks (wire.md sections 3 to 8)."""

    def __init__(self, path, manifest, me, port, name):
        self.path, self.m, self.me, self.port, self.name = path, manifest, me, port, name
        self.node_id = me.node_id
        self.by_peer = {}  # node ID -> the Conn serving it (rule 2: one per peer)
        self.lock = threading.Lock()

    def handle(self, sock):
        sock.settimeout(10)  # the HANDSHAKE must come within 10 s (section 9)
        try:
            # secure.md section 2; a plaintext PROBE or RELAY (section 5) fails here: NAT
            # connections are not spoken by this peer.
            c = Conn(sock, *secure_handshake(sock, self.me, initiator=False))
        except (Violation, OSError, ValueError):
            sock.close()
            return
        try:
            self.session(c)
        except Violation as v:
            c.send(error_frame(PROTOCOL_VIOLATION, str(v)))
        except DecodeError as e:
            c.send(error_frame(PROTOCOL_VIOLATION, f"cannot decode your frame: {e}"))
        except OSError:
            pass
        c.close()

    def session(self, c):
        msg = c.recv()
        if msg is None or msg[0] in (PROBE, RELAY):  # NAT connections are not spoken here
            return
        t, f = msg
        if t != HANDSHAKE:
            raise Violation("expected HANDSHAKE")  # rule 1
        if f["node"] != c.peer:  # secure.md section 3: the ID it proved, and no other
            return
        if f["content"] != self.m.id:
            c.send(error_frame(UNKNOWN_CONTENT, "unknown content"))
            return
        if f["node"] == self.node_id:
            return  # connected to ourselves (rule 2)
        with self.lock:  # rule 2: a second connection from the same node replaces the first
            old, self.by_peer[f["node"]] = self.by_peer.get(f["node"]), c
        if old:
            old.close()
        c.talking()
        c.send(frame(HANDSHAKE, b"PSWP\x01\x00" + self.node_id + self.m.id +
                     struct.pack(">H", self.port)))
        name = self.name.encode()[:255]
        c.send(frame(METADATA, bytes([len(name)]) + name))
        n = self.m.count
        c.send(bitfield(n, range(n)))  # a seed: every bit set
        peer_bits, got_meta, choking = None, False, True
        while True:
            msg = c.recv()
            if msg is None:
                return
            t, f = msg
            if t in (HAVE, REQUEST, PIECE, CANCEL, REJECT, CHOKE, UNCHOKE, INTERESTED,
                     NOT_INTERESTED) and peer_bits is None:
                raise Violation(f"{NAMES[t]} before your BITFIELD")  # rule 4
            if "chunk" in f and f["chunk"] >= n:
                raise Violation("chunk index past the last chunk")  # rule 5
            if t == HANDSHAKE:
                raise Violation("second HANDSHAKE")
            elif t == METADATA:
                if got_meta or peer_bits is not None:
                    raise Violation("METADATA twice or after BITFIELD")  # rule 6
                got_meta = True
            elif t == BITFIELD:
                if peer_bits is not None or f["count"] != n:
                    raise Violation("second BITFIELD, or wrong chunk count")  # rule 4
                peer_bits = f["bits"]
            elif t == MREQ:
                start = f["offset"]
                if start >= len(self.m.raw):
                    raise Violation("MANIFEST_REQUEST past the end")
                data = self.m.raw[start:start + f["length"]]
                c.send(frame(MDATA, struct.pack(">II", len(self.m.raw), start) + data))
            elif t == INTERESTED and choking:
                choking = False  # every interested peer gets a slot (section 11: policy)
                c.send(frame(UNCHOKE))
            elif t == REQUEST:
                i = f["chunk"]
                if choking:  # section 8: answered, the connection stays
                    c.send(frame(REJECT, struct.pack(">IB", i, CHOKED)))
                    continue
                with open(self.path, "rb") as fh:
                    fh.seek(i * self.m.chunk_size)
                    data = fh.read(self.m.chunk_len(i))
                c.send(frame(PIECE, struct.pack(">I", i) + data))
            elif t == PIECE:
                raise Violation("PIECE never requested")
            elif t in (PROBE, RELAY, RELAY_OK):
                raise Violation("NAT frame on a content connection")  # section 4.18
            elif t == ERROR:
                return  # nothing follows an ERROR (section 4.17)
            # KEEPALIVE, HAVE, CANCEL, REJECT, CHOKE, UNCHOKE, NOT_INTERESTED, PEERS: nothing
            # to do for a seed that never chokes a peer it unchoked


def download(content, peer, me, out_dir):
    """Downloads `content` from one `peer` (wire.md sections 3, 5 to 8); returns the path."""
    s = socket.create_connection(peer, timeout=30)
    try:
        c = Conn(s, *secure_handshake(s, me, initiator=True))  # secure.md section 2
    except Violation as v:
        raise OSError(f"secure handshake: {v}")
    c.send(frame(HANDSHAKE, b"PSWP\x01\x00" + me.node_id + content + b"\x00\x00"))
    t, f = c.recv() or (None, None)
    if t != HANDSHAKE or f["content"] != content:
        raise OSError(f"{peer} does not serve the content")
    if f["node"] != c.peer:
        raise OSError(f"{peer} claims a node ID it did not prove")
    c.talking()
    name, offered, count = None, set(), None
    while count is None:  # METADATA (optional), then BITFIELD
        t, f = c.recv() or (None, {})
        if t == METADATA:
            name = f["name"]
        elif t == BITFIELD:
            count = f["count"]
            offered = {i for i in range(count) if f["bits"][i // 8] & (0x80 >> (i % 8))}
        elif t not in (PEERS, KEEPALIVE):
            raise OSError(f"unexpected {NAMES[t] if t is not None else 'close'}")
    raw, total = b"", None  # section 5: the manifest, in pieces, checked against the ID
    while total is None or len(raw) < total:
        c.send(frame(MREQ, struct.pack(">II", len(raw), 262144)))
        t, f = c.recv() or (None, {})
        while t in (HAVE, PEERS, KEEPALIVE):
            if t == HAVE:
                offered.add(f["chunk"])
            t, f = c.recv() or (None, {})
        if t != MDATA or f["offset"] != len(raw):
            raise OSError("bad MANIFEST_DATA")
        total, raw = f["total"], raw + f["data"]
    if hashlib.sha256(raw).digest() != content:
        c.send(error_frame(BANNED, "a manifest you sent failed verification"))
        raise OSError("the manifest does not hash to the content ID")
    m = Manifest(raw)
    if m.count != count:
        raise OSError("BITFIELD chunk count is not the manifest's")
    c.send(bitfield(m.count, []) + frame(INTERESTED))
    # A file under its final name only when complete: write to NAME.part, then rename.
    safe = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in name or "")
    safe = safe.lstrip(".").strip() or content.hex()[:16] + ".bin"
    path = os.path.join(out_dir, safe)
    have, asked, unchoked = set(), set(), False
    with open(path + ".part", "wb") as out:
        out.truncate(m.size)
        while len(have) < m.count:
            if unchoked:  # pipelined: up to 8 requests in flight (section 8)
                for i in sorted(offered - have - asked)[:8 - len(asked)]:
                    c.send(frame(REQUEST, struct.pack(">I", i)))
                    asked.add(i)
            msg = c.recv()
            if msg is None:
                raise OSError("the peer closed the connection")
            t, f = msg
            if t == UNCHOKE:
                unchoked = True
            elif t == CHOKE:
                unchoked, asked = False, set()  # our requests are void
            elif t == HAVE:
                offered.add(f["chunk"])  # a BITFIELD is not final (rule 4)
            elif t == REJECT:
                asked.discard(f["chunk"])
                if f["reason"] == NOT_AVAILABLE:
                    offered.discard(f["chunk"])
            elif t == PIECE:
                i = f["chunk"]
                if i not in asked:
                    continue  # crossed a CANCEL or CHOKE
                asked.discard(i)
                if hashlib.sha256(f["data"]).digest() != m.hashes[i]:
                    c.send(error_frame(BANNED, "a chunk you sent failed verification"))
                    raise OSError(f"chunk {i} failed verification")
                out.seek(i * m.chunk_size)
                out.write(f["data"])
                have.add(i)
                c.send(frame(HAVE, struct.pack(">I", i)))
            elif t == ERROR:
                raise OSError(f"the peer closed with ERROR {f['code']}: {f['text']}")
    with open(path + ".part", "rb") as fh:
        if hashlib.sha256(fh.read()).digest() != m.file_sha:
            raise OSError("whole-file hash mismatch")
    os.replace(path + ".part", path)
    c.send(frame(NOT_INTERESTED) + error_frame(COMPLETE, "download complete"))
    c.close()
    return path


# ---------------------------------------------------------------------------------------
# The command line


def parse_hostport(s):
    host, _, port = s.rpartition(":")
    return (host.strip("[]"), int(port))


def open_sockets(port):
    """A UDP socket and a TCP listener on one port number (dht.md section 2)."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1" if port == 0 else "0.0.0.0", port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((udp.getsockname()[0], udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(64)
        return udp, tcp
    raise OSError("no free port")


def main():
    ap = argparse.ArgumentParser(description="A small PeerShare peer (see the module doc).")
    ap.add_argument("command", choices=["serve", "get"])
    ap.add_argument("what", help="serve: a file; get: a content ID")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bootstrap")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    udp, tcp = open_sockets(a.port)
    port = udp.getsockname()[1]
    me = Identity()  # a new identity each run: nothing is kept on disk
    dht = Dht(udp, me)
    if a.bootstrap:
        dht.bootstrap(parse_hostport(a.bootstrap))
    print(f"node_id: {dht.id.hex()}\nlisten: {udp.getsockname()[0]}:{port}", flush=True)
    if a.command == "serve":
        m = Manifest.of_file(a.what)
        seeder = Seeder(a.what, m, me, port, os.path.basename(a.what))
        dht.serving.add(m.id)  # our own PROVIDERS answers list us
        print(f"content: {m.id.hex()}\nready", flush=True)

        def republish():
            while True:
                dht.announce(m.id, port)
                time.sleep(1800)
        threading.Thread(target=republish, daemon=True).start()
        while True:
            sock, _ = tcp.accept()
            threading.Thread(target=seeder.handle, args=(sock,), daemon=True).start()
    content = bytes.fromhex(a.what)
    for attempt in range(10):  # providers may not be stored yet: look again
        providers, _ = dht.lookup(content, GET_PROVIDERS)
        for p in sorted(providers):
            try:
                print(f"done: {download(content, p, me, a.out)}", flush=True)
                return 0
            except (OSError, DecodeError) as e:
                print(f"{p[0]}:{p[1]}: {e}", file=sys.stderr)
        time.sleep(1)
    print("no provider could serve the content", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
