"""The little of PeerShare's wire protocol and manifest format the soak harness needs, written
from protocol-spec/wire.md and protocol-spec/content.md (not from the Rust code), so that the
harness checks the node against the spec:

- manifest(): the manifest and content ID of a file, as a publisher computes them;
- frame encoders and FrameReader, a decoder of frames off a TCP socket;
- probe_withdrawal(): a minimal downloader that asks a node for one chunk of a content, used
  to make a node notice that a file it shares was deleted (it then withdraws it).

The liar (liar.py) and the flooder (flood.py) use the same encoders.
"""
import hashlib
import os
import socket
import struct
import time

CHUNK_SIZE = 256 * 1024  # content.md section 3: the chunk size of every file up to 2 GiB
MAX_FRAME_LEN = 1024 * 1024 + 16  # wire.md section 2

# Message types (wire.md section 1).
KEEPALIVE, HANDSHAKE, METADATA, MANIFEST_REQUEST, MANIFEST_DATA, BITFIELD, HAVE, REQUEST, \
    PIECE, CANCEL, REJECT, CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, PEERS, ERROR = range(0x11)
# REJECT reasons and ERROR codes (wire.md sections 4.11 and 4.17).
REJECT_NOT_AVAILABLE, REJECT_CHOKED, REJECT_BUSY, REJECT_CONTENT_CHANGED = 1, 2, 3, 4
ERR_UNKNOWN_CONTENT, ERR_PROTOCOL_VIOLATION, ERR_BANNED = 1, 2, 3


def manifest(path):
    """(content_id_hex, manifest_bytes, size) of the file at PATH (content.md section 2)."""
    size = os.path.getsize(path)
    whole = hashlib.sha256()
    chunks = []
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK_SIZE)
            if not b:
                break
            whole.update(b)
            chunks.append(hashlib.sha256(b).digest())
    m = (b"PSMF" + bytes([1]) + struct.pack(">QII", size, CHUNK_SIZE, len(chunks))
         + whole.digest() + b"".join(chunks))
    return hashlib.sha256(m).hexdigest(), m, size


def frame(msg_type, body=b""):
    return struct.pack(">IB", 1 + len(body), msg_type) + body


def handshake(node_id, content_id, listen_port):
    """HANDSHAKE version 1: magic, version, flags, node ID, content ID, listen port."""
    return frame(HANDSHAKE, b"PSWP" + bytes([1, 0]) + node_id + content_id + struct.pack(">H", listen_port))


def bitfield(count, full):
    bits = bytearray((count + 7) // 8)
    if full:
        for i in range(count):
            bits[i // 8] |= 0x80 >> (i % 8)
    return frame(BITFIELD, struct.pack(">I", count) + bytes(bits))


def error(code, text):
    t = text.encode()[:200]
    return frame(ERROR, struct.pack(">HB", code, len(t)) + t)


class WireClosed(Exception):
    pass


class FrameReader:
    """Frames off a blocking socket: next() returns (type, body), raises WireClosed at EOF or
    on a frame no valid peer sends (a bad length), socket.timeout when nothing came in time."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def next(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from(">I", self.buf)
                if n == 0 or n > MAX_FRAME_LEN:
                    raise WireClosed(f"bad frame length {n}")
                if len(self.buf) >= 4 + n:
                    t, body = self.buf[4], bytes(self.buf[5:4 + n])
                    del self.buf[:4 + n]
                    return t, body
            b = self.sock.recv(1 << 16)
            if not b:
                raise WireClosed("closed by peer")
            self.buf += b


def bit_set(bits, i):
    return bool(bits[i // 8] & (0x80 >> (i % 8)))


def handshake_answer(addr, content_hex, timeout=3.0):
    """What the peer at ADDR answers to a HANDSHAKE for CONTENT_HEX: "serves" (its own
    HANDSHAKE), "ERROR n" (1 unknown content, 4 too many connections, ...), "closed",
    "refused", "timeout" or another error's name."""
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(handshake(os.urandom(32), bytes.fromhex(content_hex), 0))
            t, body = FrameReader(s).next()
            if t == HANDSHAKE:
                return "serves"
            if t == ERROR and len(body) >= 2:
                return f"ERROR {struct.unpack_from('>H', body)[0]}"
            return f"type {t}"
    except WireClosed:
        return "closed"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return e.__class__.__name__


def probe_withdrawal(addr, content_hex, original=None, timeout=20.0):
    """Asks the node at ADDR ("ip:port") for one chunk of CONTENT_HEX, as a downloader would,
    and says what happened:
      "unknown"  - the node does not serve the content (ERROR UNKNOWN_CONTENT or refused);
      "changed"  - it answered REJECT CONTENT_CHANGED (it noticed the file is gone);
      "served: ..." - it sent a PIECE (which chunk, and whether its bytes are those of the file
                   ORIGINAL, if given): it served a file that no longer exists (a bug);
      "timeout"  - no decisive answer in time (e.g. it never unchoked us);
      "error: ..." - the connection failed.
    Why this is needed: a node notices that a file it shares changed or was deleted only when
    it reads it to serve a chunk (src/content/index.rs, ChunkReader); until then it keeps it
    as shared and answers local_request_file with "File already available locally"."""
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.settimeout(1.0)
            s.sendall(handshake(os.urandom(32), bytes.fromhex(content_hex), 0))
            r = FrameReader(s)
            count, have, requested, unchoked = None, set(), False, False
            while time.monotonic() < deadline:
                try:
                    t, body = r.next()
                except socket.timeout:
                    continue
                if t == ERROR:
                    code = struct.unpack_from(">H", body)[0] if len(body) >= 2 else -1
                    return "unknown" if code == ERR_UNKNOWN_CONTENT else f"error: ERROR code {code}"
                if t == BITFIELD and len(body) >= 4:
                    count = struct.unpack_from(">I", body)[0]
                    have |= {i for i in range(count) if bit_set(body[4:], i)}
                    # Our own (empty) BITFIELD must come before INTERESTED (wire.md section 3).
                    s.sendall(bitfield(count, False) + frame(INTERESTED))
                elif t == HAVE and len(body) == 4:
                    have.add(struct.unpack(">I", body)[0])
                elif t == UNCHOKE:
                    unchoked = True
                elif t == CHOKE:
                    unchoked, requested = False, False
                elif t == REJECT and len(body) == 5:
                    if body[4] == REJECT_CONTENT_CHANGED:
                        return "changed"
                    requested = False  # choked or busy: ask again when possible
                elif t == PIECE and len(body) > 4:
                    (i,) = struct.unpack_from(">I", body)
                    same = "?"
                    if original:
                        with open(original, "rb") as f:
                            f.seek(i * CHUNK_SIZE)
                            same = "the original's" if f.read(len(body) - 4) == body[4:] else "NOT the original's"
                    return f"served: chunk {i}, {len(body) - 4} bytes, {same} bytes"
                if count is not None and unchoked and have and not requested:
                    s.sendall(frame(REQUEST, struct.pack(">I", min(have))))
                    requested = True
            return "timeout"
    except WireClosed:
        return "unknown"
    except OSError as e:
        return f"error: {e.__class__.__name__}: {e}"
