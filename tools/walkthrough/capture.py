"""The session behind the walkthrough: three real nodes on loopback, captured with dumpcap, and
the messages read back from the capture (UDP datagrams whole, TCP streams reassembled per
direction and cut into wire frames).

Python 3 standard library only. Used by generate.py; see its docstring.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The shared file: FILE_LEN bytes, block i (32 bytes) = SHA-256(FILE_SEED || i as u64
# big-endian), the last block cut short. tests/walkthrough.rs rebuilds it the same way.
FILE_SEED = b"peershare walkthrough"
FILE_LEN = 300_000
FILE_NAME = "walkthrough.bin"
KEYLOG = "keys.log"  # in the session's directory


def file_content():
    """The bytes B shares: the same on every run, so the content ID is stable."""
    out = bytearray()
    i = 0
    while len(out) < FILE_LEN:
        out += hashlib.sha256(FILE_SEED + struct.pack(">Q", i)).digest()
        i += 1
    return bytes(out[:FILE_LEN])


class SessionError(Exception):
    """The session or its capture went wrong; the message says how. Worth another try."""


class FatalError(SessionError):
    """No point trying again: no dumpcap, no right to capture, a port taken."""


@dataclass
class NodeInfo:
    name: str
    port: int
    api_port: int = 0
    node_id: str = ""
    proc: object = None
    log: Path = None


@dataclass
class Session:
    """What happened: the nodes, when each step was taken, and the capture file."""

    nodes: dict
    content_id: str = ""
    steps: list = field(default_factory=list)  # (time, what)
    pcap: Path = None

    @property
    def keylog(self):
        """The nodes' key log, beside the capture."""
        return self.pcap.parent / KEYLOG

    def to_json(self):
        return {
            "nodes": {
                n.name: {"port": n.port, "api_port": n.api_port, "node_id": n.node_id}
                for n in self.nodes.values()
            },
            "content_id": self.content_id,
            "steps": self.steps,
        }

    @staticmethod
    def from_json(d, pcap):
        nodes = {
            name: NodeInfo(name, v["port"], v["api_port"], v["node_id"])
            for name, v in d["nodes"].items()
        }
        s = Session(nodes, d["content_id"], [tuple(x) for x in d["steps"]], pcap)
        return s


# ----- running the session ---------------------------------------------------------------------


def api_call(port, kind, payload, timeout=120):
    """One request to a node's JSON API, one reply line."""
    req = json.dumps({"type": kind, "payload": payload}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        buf = b""
        while not buf.endswith(b"\n"):
            b = s.recv(65536)
            if not b:
                raise SessionError(f"{kind}: connection closed before a reply")
            buf += b
    return json.loads(buf)


def wait_until(limit, f):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if f():
            return True
        time.sleep(0.05)
    return f()


class Dumpcap:
    """dumpcap on lo, UDP and TCP of the nodes' ports, classic pcap format."""

    def __init__(self, path, ports):
        self.path = path
        flt = "(udp or tcp) and (" + " or ".join(f"port {p}" for p in ports) + ")"
        try:
            self.proc = subprocess.Popen(
                ["dumpcap", "-i", "lo", "-q", "-P", "-B", "16", "-f", flt, "-w", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        except FileNotFoundError:
            raise FatalError("dumpcap not found: apt-get install tshark (or wireshark-common)")
        self.lines = []
        started = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line.strip())
                if line.startswith("Capturing on"):
                    started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(30):
            self.kill()
            raise SessionError("dumpcap did not start: " + " / ".join(self.lines[:3]))
        # "Capturing on" comes before the device is opened: a missing right shows up just after.
        time.sleep(1.0)
        if self.proc.poll() is not None:
            said = [l for l in self.lines if l and not l.startswith("Capturing on")]
            raise FatalError(f"{NO_RIGHTS}. dumpcap says: {' '.join(said[:2])}")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SessionError("dumpcap did not stop")
        if rc != 0:
            raise SessionError(f"dumpcap exited with {rc}: " + " / ".join(self.lines))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_node(binary, work, node, bootstrap):
    data = work / node.name
    node.log = work / f"{node.name}.log"
    args = [str(binary), "run", "--data-dir", str(data), "--bind", "127.0.0.1",
            "--port", str(node.port), "--api-port", "0", "-q"]
    if bootstrap:
        args += ["--bootstrap", f"127.0.0.1:{bootstrap.port}"]
    # Every wire session's keys go to one key log (secure.md section 6), so that the
    # captured records can be opened: both ends of a session write the same line.
    env = dict(os.environ, PEERSHARE_KEYLOG=str(work / KEYLOG))
    with open(node.log, "wb") as err:
        node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=err, text=True, env=env)
    lines = []
    ready = threading.Event()

    def read():
        for line in node.proc.stdout:
            lines.append(line.strip())
            if line.strip() == "ready":
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(30):
        raise SessionError(
            f"node {node.name} did not start on port {node.port} (taken? try --base-port): "
            + node.log.read_text(errors="replace")[-500:]
        )
    for line in lines:
        key, _, value = line.partition(": ")
        if key == "node_id":
            node.node_id = value.split()[0]
        elif key == "api":
            node.api_port = int(value.split()[0].rsplit(":", 1)[1])
    if not node.node_id or not node.api_port:
        raise SessionError(f"node {node.name}: no node_id or api line in {lines}")


def stop_node(node):
    if node.proc and node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


def run_session(binary, work, base_port, log=print):
    """Runs the session and returns it, its capture in work/session.pcap."""
    nodes = {n: NodeInfo(n, base_port + i) for i, n in enumerate("ABC")}
    a, b, c = nodes["A"], nodes["B"], nodes["C"]
    for n in nodes.values():
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                # As the node's own listener: a connection of an earlier run in TIME_WAIT
                # does not make the port taken.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", n.port))
                except OSError as e:
                    raise FatalError(f"port {n.port} is taken ({e}); choose --base-port")
    src = work / "share" / FILE_NAME
    src.parent.mkdir(parents=True)
    src.write_bytes(file_content())
    session = Session(nodes, pcap=work / "session.pcap")
    t0 = time.time()

    def step(what):
        session.steps.append((time.time(), what))
        log(f"  {time.time() - t0:6.2f}s  {what}")

    def status(n):
        return api_call(n.api_port, "status", {})

    def quiet():
        """Waits until no node has sent or received a datagram for 0.3 s, and no lookup runs."""
        def counts():
            out = []
            for n in nodes.values():
                if n.proc is None:
                    continue
                st = status(n)
                out.append((st["dht"]["datagrams_in"], st["dht"]["datagrams_out"],
                            st["running_lookups"]))
            return out
        last, since = counts(), time.monotonic()
        while time.monotonic() - since < 0.3:
            time.sleep(0.05)
            now = counts()
            if now != last or any(c[2] for c in now):
                last, since = now, time.monotonic()

    cap = Dumpcap(session.pcap, [n.port for n in nodes.values()])
    try:
        step("A starts, alone")
        start_node(binary, work, a, None)
        step("B starts, bootstrapping from A")
        start_node(binary, work, b, a)
        if not wait_until(10, lambda: status(b)["routing_table_size"] >= 1):
            raise SessionError("B did not join A")
        quiet()
        step("C starts, bootstrapping from A")
        start_node(binary, work, c, a)
        for n in nodes.values():
            if not wait_until(10, lambda: status(n)["routing_table_size"] >= 2):
                raise SessionError(f"node {n.name} did not learn both others")
        quiet()
        step("B: local_add_file")
        r = api_call(b.api_port, "local_add_file", {"filepath": str(src)})
        if r.get("status") != "success":
            raise SessionError(f"local_add_file: {r}")
        session.content_id = r["file_hash"]
        # The reply comes once the file is hashed; the announce goes on in the background.
        if not wait_until(10, lambda: status(a)["provider_records"] >= 1
                          and status(c)["provider_records"] >= 1):
            raise SessionError("B's announce did not reach A and C")
        quiet()
        step("C: local_request_content_info")
        r = api_call(c.api_port, "local_request_content_info", {"content_hash": session.content_id})
        if f"127.0.0.1:{b.port}" not in r.get("peers", []):
            raise SessionError(f"C does not find B as a provider: {r}")
        quiet()
        step("C: local_request_file")
        out = work / "downloads"
        r = api_call(c.api_port, "local_request_file",
                     {"content_hash": session.content_id, "output_dir": str(out)})
        if r.get("status") != "success":
            raise SessionError(f"local_request_file: {r}")
        if (out / FILE_NAME).read_bytes() != file_content():
            raise SessionError("the downloaded file differs from the shared one")
        # C announces itself once it holds a verified chunk; the connection closes after.
        if not wait_until(10, lambda: status(a)["provider_records"] >= 2
                          and status(b)["provider_records"] >= 1):
            raise SessionError("C's announce did not reach A and B")
        quiet()
        time.sleep(0.2)
        step("the nodes stop (SIGTERM)")
        for n in (c, b, a):
            stop_node(n)
        time.sleep(0.3)
        step("capture stops")
        cap.stop()
    finally:
        for n in nodes.values():
            stop_node(n)
        cap.kill()
    return session


# ----- reading the capture -----------------------------------------------------------------------


@dataclass
class Message:
    """One DHT datagram, one Noise handshake message, one record, or one wire frame opened
    from the records, as captured."""

    index: int  # capture number of the packet that completed it (for a frame: its record's)
    time: float
    kind: str  # "dht", "noise", "record" or "wire"
    src: tuple  # (ip, port)
    dst: tuple
    data: bytes
    conn: int = 0  # TCP messages: which connection (1, 2, ...)
    dir: str = ""  # TCP messages: "i" from the session's initiator (the dialer), "r" from the responder
    pos: tuple = ()  # TCP messages: their order within one packet
    info: dict = None  # noise: the decoder's handshake message; record: its record info;
    #                    wire: {"plain": (offset, length) in its direction's plaintext,
    #                           "records": the numbers of the records carrying it}


@dataclass
class Event:
    """A TCP connection opening or closing (no payload, so no message)."""

    index: int
    time: float
    what: str  # "connect", "fin", "rst"
    src: tuple
    dst: tuple
    conn: int


def read_pcap(path):
    """Packets of a classic pcap file: (time, link type, bytes)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise SessionError("capture file too short")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise SessionError("not a pcap file (dumpcap -P writes one)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    pos, out = 24, []
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[pos:pos + 16])
        pos += 16
        if incl != orig:
            raise SessionError(f"a packet was cut to {incl} of {orig} bytes (snap length)")
        out.append((sec + frac / (1e9 if nano else 1e6), linktype, data[pos:pos + incl]))
        pos += incl
    return out


def ip_payload(linktype, pkt):
    """(proto, src ip, dst ip, transport bytes) of an IPv4 packet, or None."""
    if linktype == 1:  # Ethernet (lo)
        if len(pkt) < 14 or pkt[12:14] != b"\x08\x00":
            return None
        ip = pkt[14:]
    elif linktype == 113:  # Linux cooked
        if pkt[14:16] != b"\x08\x00":
            return None
        ip = pkt[16:]
    elif linktype == 101:  # raw IP
        ip = pkt
    else:
        raise SessionError(f"link type {linktype} not handled")
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 15) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    src = socket.inet_ntoa(ip[12:16])
    dst = socket.inet_ntoa(ip[16:20])
    return ip[9], src, dst, ip[ihl:total]


class Stream:
    """One direction of a TCP connection, reassembled in sequence order."""

    def __init__(self, isn):
        self.next = (isn + 1) & 0xFFFFFFFF
        self.buf = b""
        self.pending = {}  # seq -> bytes that arrived early

    def add(self, seq, payload):
        self.pending[seq] = payload
        progress = True
        while progress:
            progress = False
            for s, p in list(self.pending.items()):
                ahead = (s - self.next) & 0xFFFFFFFF
                if ahead == 0 or ahead >= 0x80000000:  # at or before the next byte
                    del self.pending[s]
                    skip = 0 if ahead == 0 else (0x100000000 - ahead)
                    if skip < len(p):
                        self.buf += p[skip:]
                        self.next = (self.next + len(p) - skip) & 0xFFFFFFFF
                    progress = True


def extract(pcap_path, ports):
    """The DHT datagrams to or from `ports`, in capture order; the TCP connections' openings
    and closings; every packet's capture time, by number; and each TCP direction's bytes,
    reassembled, by (src, dst). What the streams carry is read by `peershare decode --pcap`
    (session_messages); the bytes here are cut where it says records are."""
    messages, events, times, streams = [], [], {}, {}
    conns = {}  # frozenset of endpoints -> number, in the order of their SYNs
    for i, (t, lt, pkt) in enumerate(read_pcap(pcap_path), 1):
        times[i] = t
        p = ip_payload(lt, pkt)
        if p is None:
            continue
        proto, sip, dip, tp = p
        if proto == 17:
            sport, dport, ulen = struct.unpack(">HHH", tp[:6])
            if sport in ports or dport in ports:
                messages.append(Message(i, t, "dht", (sip, sport), (dip, dport), tp[8:ulen]))
        elif proto == 6:
            sport, dport, seq, _ack, off_flags = struct.unpack(">HHIIH", tp[:14])
            if sport not in ports and dport not in ports:
                continue
            hl, flags = (off_flags >> 12) * 4, off_flags & 0x3F
            src, dst = (sip, sport), (dip, dport)
            key = frozenset((src, dst))
            if flags & 0x02:  # SYN
                if not flags & 0x10:  # without ACK: the dialer's
                    conns.setdefault(key, len(conns) + 1)
                    events.append(Event(i, t, "connect", src, dst, conns[key]))
                streams[(src, dst)] = Stream(seq)
            elif (src, dst) not in streams or key not in conns:
                raise SessionError(f"packet {i}: TCP before its SYN (capture started late?)")
            elif tp[hl:]:
                streams[(src, dst)].add(seq, tp[hl:])
            if flags & 0x01:
                events.append(Event(i, t, "fin", src, dst, conns[key]))
            if flags & 0x04:
                events.append(Event(i, t, "rst", src, dst, conns[key]))
    for (src, dst), st in streams.items():
        if st.pending:
            raise SessionError(f"TCP {src} -> {dst}: {len(st.pending)} segment(s) after a gap: "
                               f"the capture lost packets")
    return messages, events, times, {k: st.buf for k, st in streams.items()}


def endpoint(s):
    """("ip", port) of "ip:port"."""
    ip, _, port = s.rpartition(":")
    return ip, int(port)


def session_messages(report, times, streams):
    """The handshake messages, records and wire frames of `peershare decode --pcap --keylog
    --json`'s report, as messages in stream order, the records' bytes cut from `streams`
    (extract's). Raises SessionError when a session is not a secure one opened whole (a lost
    segment, a missing key): such a capture is no lesson."""
    out = []
    for s in report["sessions"]:
        c = s["connection"]
        init, resp = endpoint(s["initiator"]), endpoint(s["responder"])
        if s["kind"] != "secure" or s["keys"] != "found":
            raise SessionError(f"TCP connection {c}: a {s['kind']} session, keys {s['keys']}")
        ends = {"i": (init, resp), "r": (resp, init)}
        sent = {"msg1": "i", "msg2": "r", "msg3": "i"}
        if [h["name"] for h in s["handshake"]] != ["msg1", "msg2", "msg3"]:
            raise SessionError(f"TCP connection {c}: not a whole handshake")
        for h in s["handshake"]:
            d = sent[h["name"]]
            start = h["fields"][0]["offset"]
            data = bytes.fromhex(h["hex"])
            if streams[ends[d]][start:start + len(data)] != data:
                raise SessionError(f"TCP connection {c}: {h['name']} is not where the decoder "
                                   f"says")
            out.append(Message(h["packet"], times[h["packet"]], "noise", *ends[d],
                               bytes.fromhex(h["hex"]), c, d, (start, 0, 0), h))
        for d, dr in zip("ir", s["directions"]):
            if dr["stopped"]:
                raise SessionError(f"TCP connection {c}, {dr['from']} -> {dr['to']}: "
                                   f"{dr['stopped']}")
            plain = bytes.fromhex(dr["plaintext"])
            ex = dr["frames"]
            if ex is None or not ex["valid"] or ex["frames"] != len(ex["messages"]):
                raise SessionError(f"TCP connection {c}, {dr['from']}: its plaintext is not "
                                   f"whole wire frames")
            stream = streams[ends[d]]
            if len(stream) != dr["stream_len"]:
                raise SessionError(f"TCP connection {c}, {dr['from']}: {len(stream)} bytes "
                                   f"reassembled here, {dr['stream_len']} by the decoder")
            recs = dr["records"]
            for r in recs:
                if r["plain"] is None:
                    raise SessionError(f"TCP connection {c}: record {r['number']} not opened")
                data = stream[r["offset"]:r["offset"] + r["len"]]
                out.append(Message(r["packet"], times[r["packet"]], "record", *ends[d], data,
                                   c, d, (r["offset"], 0, 0), r))
            for m in ex["messages"]:
                o, n = m["offset"], m["length"]
                end = o + n
                carrying = [r for r in recs if r["plain"][0] < end
                            and r["plain"][0] + r["plain"][1] > o]
                last = carrying[-1]
                out.append(Message(last["packet"], times[last["packet"]], "wire", *ends[d],
                                   plain[o:end], c, d, (last["offset"], 1, o),
                                   {"plain": (o, n), "records": [r["number"] for r in carrying]}))
    return out


def build_release(root):
    """cargo build --release; the binary's path."""
    env = dict(os.environ)
    cargo = env.get("CARGO", "cargo")
    subprocess.run([cargo, "build", "--release", "--bin", "peershare"], cwd=root, check=True)
    target = Path(env.get("CARGO_TARGET_DIR", root / "target"))
    if not target.is_absolute():
        target = root / target
    return target / "release" / "peershare"


NO_RIGHTS = ("capturing on lo needs root: run `sudo make walkthrough` (or give dumpcap the "
             "right to capture: Debian's `dpkg-reconfigure wireshark-common`, then join the "
             "wireshark group)")


def check_capture_rights():
    """Raises FatalError, saying what to do, when this user cannot capture on lo."""
    if shutil.which("dumpcap") is None:
        raise FatalError("dumpcap not found: apt-get install tshark (or wireshark-common)")
    if os.geteuid() == 0:
        return
    try:
        r = subprocess.run(["dumpcap", "-i", "lo", "-q", "-a", "duration:1", "-w", os.devnull],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return
    if r.returncode != 0:
        lines = [l.strip() for l in r.stderr.splitlines()
                 if l.strip() and not l.startswith("Capturing on")]
        raise FatalError(f"{NO_RIGHTS}. dumpcap says: {' '.join(lines[:2])}")
