"""walkthrough.md and walkthrough.bytes from the captured messages and their explanations.

The formats tests/walkthrough.rs reads back are in formats.py; why each packet was sent is
in notes.py, the prose of each section in prose.py.
"""

import hashlib

from formats import (BYTES_HEADER, DUMP_ROW, ELIDE_HEAD, ELIDE_OVER, TABLE_HEAD, code,
                     dump_rows, packet_line, sha_column, table_rows, text_cell)
from notes import CHUNK_SIZE, Notes, u32
from prose import Prose


def assemble_manifest(messages):
    """The manifest from the MANIFEST_DATA frames (total_len, offset, data), or None."""
    parts, total = {}, None
    for m in messages:
        if m.kind == "wire" and len(m.data) > 13 and m.data[4] == 0x04:
            total = u32(m.data, 5)
            parts[u32(m.data, 9)] = m.data[13:]
    if total is None:
        return None
    out = bytearray()
    while len(out) < total:
        if len(out) not in parts:
            return None
        out += parts[len(out)]
    return bytes(out)


def leaves(fields):
    for f in fields:
        yield f
        yield from leaves(f.get("children", []))


class Packet:
    """One numbered message of the page, with the decoder's word on it."""

    def __init__(self, n, msg, ex):
        self.n, self.msg, self.ex = n, msg, ex
        m = ex["messages"][0]
        self.name, self.summary, self.notes = m["name"], m["summary"], m.get("notes", [])
        self.fields = m["fields"]
        d = msg.data
        self.type, self.body = None, b""
        if msg.kind == "dht":
            self.type, self.flags = d[3], d[4]
            self.txid = d[5:13].hex()
            self.sender = d[13:45].hex()
            self.body = d[45:]
        elif msg.kind == "wire":
            self.type = d[4]
            self.body = d[5:]
        self.section = None
        self.full = True
        self.note = self.short = ""
        self.answers = None  # the request this answers
        self.answer = None  # the answer to this request
        self.src = self.dst = "?"

    def field(self, name):
        """The value of the first field of this name, at any depth, or None."""
        return next((f["value"] for f in leaves(self.fields) if f["name"] == name), None)

    def values(self, name):
        return [f["value"] for f in leaves(self.fields) if f["name"] == name]

    def line(self):
        return packet_line(self.src, self.dst, self.msg.kind, len(self.msg.data), self.summary)


SECTIONS = [
    ("join", "Joining the network, and proving who you are"),
    ("announce", "Announcing: B tells the DHT it has the file"),
    ("lookup", "Looking up: C asks who has it"),
    ("session", "Connecting: the secure session's handshake"),
    ("records", "Records, and the HANDSHAKE frames inside them"),
    ("manifest", "Metadata and the manifest"),
    ("interest", "Bitfield, offers, interest, unchoke"),
    ("pieces", "Requests and pieces"),
    ("have", "HAVE, and C becomes a provider"),
    ("closing", "Closing"),
    ("other", "Housekeeping"),
]


def anchor(title, i):
    s = f"{i}. {title}".lower()
    out = "".join(c for c in s if c.isalnum() or c in " -_")
    return out.replace(" ", "-")


class Document(Notes, Prose):
    def __init__(self, session, messages, events, explained, manifest, manifest_ex, file_bytes,
                 sessions):
        self.session = session
        self.events = events
        self.sessions = sessions  # [{"conn", "initiator", "responder", "keylog"}]
        self.manifest, self.manifest_ex = manifest, manifest_ex
        self.file = file_bytes
        # Times are from A's start, the session's first step.
        self.t0 = session.steps[0][0] if session.steps else messages[0].time
        self.nodes = session.nodes
        self.by_port = {n.port: n.name for n in self.nodes.values()}
        self.by_id = {n.node_id: n.name for n in self.nodes.values()}
        self.packets = [Packet(i, m, ex) for i, (m, ex) in enumerate(zip(messages, explained), 1)]
        self.records = {(p.msg.conn, p.msg.dir, p.msg.info["number"]): p
                        for p in self.packets if p.msg.kind == "record"}
        self._name_endpoints()
        self._pair_requests()
        self._classify()
        self._choose_full()
        for p in self.packets:
            p.note, p.short = self._note(p)
        self.full = [p for p in self.packets if p.full]
        self.check_story()

    def check_story(self):
        """The prose tells the session as it went when it was written. Stops with what changed
        if this capture went otherwise, so the page never says something untrue."""
        problems = []
        for p in self.packets:
            if p.src not in "ABC" or p.dst not in "ABC":
                problems.append(f"packet {p.n} is from {p.src} to {p.dst}, not between A, B, C")
        first = self.packets[0] if self.packets else None
        if not first or (first.name, first.src, first.dst) != ("PING", "B", "A"):
            problems.append("the first packet is not B's PING to A")
        for key, _ in SECTIONS[:9]:
            if not self.in_section(key):
                problems.append(f"section {key!r} has no packets")
        proofs = {(p.name, p.src, p.dst) for p in self.in_section("join")}
        for x, y in (("A", "B"), ("B", "A"), ("A", "C"), ("C", "A"), ("B", "C"), ("C", "B")):
            if ("PROVE", x, y) not in proofs or ("PROOF", y, x) not in proofs:
                problems.append(f"in the join, {x} does not PROVE {y} and get its PROOF")
        for p in self.packets:
            if p.name == "PROOF" and p.msg.kind == "dht":
                key = bytes.fromhex(p.field("public_key"))
                if hashlib.sha256(key).hexdigest() != p.sender:
                    problems.append(f"packet {p.n}: the PROOF's key does not hash to its sender")
        provs = {p.src: p for p in self.in_section("lookup") if p.name == "PROVIDERS"}
        b = self.nodes["B"]
        for who, want in (("B", "0.0.0.0:0"), ("A", f"127.0.0.1:{b.port}")):
            p = provs.get(who)
            if p is None or p.values("provider 1") != [want] \
                    or p.values("provider_id") != [b.node_id]:
                problems.append(f"in the lookup, {who}'s PROVIDERS does not list {want} with "
                                f"B's node ID")
        acks = {p.src for p in self.in_section("announce") if p.name == "ACK"}
        if acks != {"A", "C"}:
            problems.append(f"B's announce is acknowledged by {sorted(acks)}, not A and C")
        noise = [(p.name, p.src, p.dst) for p in self.packets if p.msg.kind == "noise"]
        if noise != [("msg1", "C", "B"), ("msg2", "B", "C"), ("msg3", "C", "B")]:
            problems.append(f"the handshake is {noise}, not C's msg1, B's msg2, C's msg3")
        hs = [p for p in self.packets if p.name == "HANDSHAKE" and p.msg.kind == "wire"]
        if [(p.src, p.dst) for p in hs] != [("C", "B"), ("B", "C")]:
            problems.append("the wire connection is not C's HANDSHAKE to B, answered by B")
        elif [p.field("node_id") for p in hs] != [self.nodes["C"].node_id, b.node_id]:
            problems.append("the HANDSHAKE frames do not name C's and B's node IDs")
        if len(self.sessions) != 1:
            problems.append(f"{len(self.sessions)} TCP connections, not one")
        if problems:
            raise SystemExit("the session no longer goes the way walkthrough.md tells it; "
                             "update the prose in tools/walkthrough/ (render.py, notes.py, "
                             "prose.py):\n- " + "\n- ".join(problems))

    # ----- who is who ----------------------------------------------------------------------

    def _name_endpoints(self):
        names = {}
        for p in self.packets:
            if p.msg.kind == "wire" and p.type == 0x01 and p.msg.src not in names:
                names[p.msg.src] = self.by_id.get(p.body[6:38].hex(), "?")

        def name(ep):
            if ep[1] in self.by_port:
                return self.by_port[ep[1]]
            return names.get(ep, f"{ep[0]}:{ep[1]}")

        self.ep_name = name
        for p in self.packets:
            p.src, p.dst = name(p.msg.src), name(p.msg.dst)

    def _pair_requests(self):
        pending = {}
        for p in self.packets:
            if p.msg.kind != "dht":
                continue
            if p.type % 2 == 1 and p.type != 0x7F:
                pending[(p.txid, p.msg.src, p.msg.dst)] = p
            else:
                req = pending.pop((p.txid, p.msg.dst, p.msg.src), None)
                if req:
                    req.answer, p.answers = p, req

    def requester(self, p):
        """The node that sent the request this packet is or answers."""
        return p.src if p.answers is None else p.answers.src

    def _step_t(self, what):
        return next(t for t, w in self.session.steps if w == what)

    def step_time(self, word):
        for t, what in self.session.steps:
            if word in what:
                return t
        return None

    # ----- the records and the frames they carry ------------------------------------------------

    def frames_in(self, rec):
        """The frames a record's plaintext is part of, in order."""
        at, size = rec.msg.info["plain"]
        return [p for p in self.packets if p.msg.kind == "wire" and p.msg.conn == rec.msg.conn
                and p.msg.dir == rec.msg.dir and p.msg.info["plain"][0] < at + size
                and p.msg.info["plain"][0] + p.msg.info["plain"][1] > at]

    def records_of(self, frame):
        """The records that carry a frame, in order."""
        m = frame.msg
        return [self.records[(m.conn, m.dir, r)] for r in m.info["records"]]

    def absorbed(self, rec):
        """True for a record listed in no section list: every frame it carries is shown in
        full, and that frame's note names it (the timeline lists it all the same)."""
        if rec.msg.kind != "record" or rec.full:
            return False
        frames = self.frames_in(rec)
        return bool(frames) and all(f.full for f in frames)

    def continues(self, rec):
        """True when the record starts inside a frame that an earlier record started."""
        at = rec.msg.info["plain"][0]
        return any(f.msg.info["plain"][0] < at for f in self.frames_in(rec))

    # ----- sections ------------------------------------------------------------------------

    def _classify(self):
        first_provider = next((p.n for p in self.packets if p.msg.kind == "dht"
                               and p.type in (5, 6, 7, 8)), None)
        connect = min((e.time for e in self.events if e.what == "connect"), default=None)
        for p in self.packets:
            kind = p.msg.kind
            if kind == "dht":
                if p.type in (1, 2, 3, 4, 0x13, 0x14):
                    p.section = "join" if first_provider is None or p.n < first_provider else "other"
                elif p.type in (5, 6, 7, 8):
                    who = self.requester(p)
                    t = (p.answers or p).msg.time
                    if who == "B":
                        p.section = "announce"
                    elif who == "C" and (connect is None or t < connect):
                        p.section = "lookup"
                    elif who == "C":
                        p.section = "have"
                    else:
                        p.section = "other"
                else:
                    p.section = "other"
            elif kind == "noise":
                p.section = "session"
            elif kind == "wire":
                accepting = p.msg.dir == "r"
                p.section = {
                    0x01: "records",
                    0x02: "manifest",
                    0x03: "manifest",
                    0x04: "manifest",
                    0x05: "manifest" if accepting else "interest",
                    # A seed's HAVEs are offers (super-seeding), part of getting started.
                    0x06: "interest" if accepting else "have",
                    0x07: "pieces",
                    0x08: "pieces",
                    0x09: "pieces",
                    0x0A: "pieces",
                    0x0B: "closing",
                    0x0C: "interest",
                    0x0D: "interest",
                    0x0E: "closing",
                    0x0F: "pieces",
                    0x10: "closing",
                    0x00: "closing",
                }.get(p.type, "other")
                if p.type == 0x0B and not any(q.type == 0x0E for q in self.packets[:p.n - 1]
                                              if q.msg.kind == "wire"):
                    p.section = "interest"
        for p in self.packets:
            if p.msg.kind == "record":
                frames = self.frames_in(p)
                p.section = frames[0].section if frames else "closing"

    def _choose_full(self):
        """Each packet is shown in full unless one of the same kind, type, size and purpose
        came earlier in its section: the later ones are listed on one line. Records look all
        alike: shown in full are each direction's first, and the first that carries the
        middle of a frame."""
        seen = set()
        for p in self.packets:
            if p.msg.kind == "record":
                if p.msg.info["number"] == 0:
                    key = ("record", p.msg.dir)
                elif self.continues(p):
                    key = ("record", "part")
                else:
                    p.full = False
                    continue
            else:
                key = (p.section, p.msg.kind, p.type, len(p.msg.data), self.variant(p))
            p.full = key not in seen
            seen.add(key)

    def in_section(self, key):
        return [p for p in self.packets if p.section == key]

    def first(self, section, name, src=None):
        for p in self.in_section(section):
            if p.name == name and (src is None or p.src == src):
                return p
        return None

    def variant(self, p):
        """What a packet is for, beyond its type: packets of one type and size but of
        different variants are each shown in full once."""
        if p.name == "PING":
            first = next(q for q in self.packets if q.msg.kind == "dht" and q.src == p.src)
            return "bootstrap" if first is p else "address"
        if p.name == "FIND_NODE":
            return "self" if p.body[:32].hex() == p.sender else "refresh"
        if p.name == "PROVE":
            return self.prove_reason(p)[0]
        if p.name == "PROVIDERS":
            provs = p.values("provider 1")
            return "none" if not provs else "self" if provs[0].startswith("0.0.0.0") else "stored"
        if p.name in ("HANDSHAKE", "BITFIELD", "HAVE"):
            return "connect" if p.msg.dir == "i" else "accept"
        return ""

    def prove_reason(self, p):
        """Why a PROVE was sent: ("request", the request) when its target asked something
        while unknown (dht.md section 6, rule 3), ("response", the answer) when it answered
        (rule 4); from the last datagram the target sent to the verifier before it."""
        x, y = p.src, p.dst
        before = [q for q in self.packets[:p.n - 1]
                  if q.msg.kind == "dht" and q.src == y and q.dst == x]
        last = before[-1] if before else None
        if last is None:
            return "", None
        return ("request" if last.answers is None else "response"), last

    # ----- the bytes file ---------------------------------------------------------------------

    def bytes_line(self, p):
        m, d = p.msg, p.msg.data
        if m.kind == "dht":
            return f"{p.n} dht {d.hex()}"
        where = f"{p.n} {m.kind} {m.conn} {m.dir}"
        if m.kind == "noise":
            return f"{where} {d.hex()}"
        if m.kind == "record":
            num = m.info["number"]
            if len(d) > ELIDE_OVER:
                at, size = m.info["plain"]
                return f"{where} {num} [sealed:{at}:{size}] {sha_column(d)}"
            return f"{where} {num} {d.hex()}"
        if p.type == 0x08 and len(d) > ELIDE_OVER:
            chunk = u32(d, 5)
            off, data = chunk * CHUNK_SIZE, d[9:]
            if self.file[off:off + len(data)] == data:
                return f"{where} {d[:9].hex()}[file:{off}:{len(data)}] {sha_column(d)}"
        return f"{where} {d.hex()}"

    def bytes_file(self):
        lines = list(BYTES_HEADER)
        for s in self.sessions:
            lines.append(f"session {s['conn']} {s['initiator']} {s['responder']} {s['keylog']}")
        lines += [self.bytes_line(p) for p in self.packets]
        return "\n".join(lines) + "\n"

    # ----- the page --------------------------------------------------------------------------

    def ms(self, t):
        return f"{(t - self.t0) * 1000:.1f}"

    def packet_block(self, p):
        out = [f"#### Packet {p.n}", "", p.line(), ""]
        if p.note:
            out += [p.note, ""]
        out += ["```text"] + dump_rows(p.msg.data) + ["```", ""]
        out += [f"Decoder note: {text_cell(n)}" for n in p.notes]
        if p.notes:
            out.append("")
        out += TABLE_HEAD + table_rows(p.fields) + [""]
        return out

    def manifest_block(self):
        ex = self.manifest_ex["messages"][0]
        out = ["#### The manifest", "",
               f"The {len(self.manifest)} bytes C assembled from MANIFEST_DATA, decoded with "
               f"`peershare decode --as manifest`: {code(ex['summary'])}", ""]
        out += ["```text"] + dump_rows(self.manifest) + ["```", ""]
        out += [f"Decoder note: {text_cell(n)}" for n in ex.get("notes", [])] + [""]
        out += TABLE_HEAD + table_rows(ex["fields"]) + [""]
        return out

    def compact_rows(self, ps):
        return [f"| {p.n} | {p.src} → {p.dst} | {code(p.summary)} | {p.short} |" for p in ps]

    def section_body(self, key):
        ps = self.in_section(key)
        out, run = [], []

        def flush():
            if run:
                out.extend(["Like packets shown above:", "",
                            "| # | from → to | message | why |", "| ---: | --- | --- | --- |"]
                           + self.compact_rows(run) + [""])
                run.clear()

        for p in ps:
            if p.full:
                flush()
                out += self.packet_block(p)
                if p.name == "MANIFEST_DATA" and self.manifest_ex:
                    out += self.manifest_block()
            elif not self.absorbed(p):
                run.append(p)
        flush()
        return out

    def nums(self, ps):
        ps = [p for p in ps if p is not None]
        if not ps:
            return "none"
        lo, hi = ps[0].n, ps[-1].n
        return f"{lo}" if lo == hi else f"{lo} to {hi}"

    def markdown(self):
        out = self.head()
        out += self.overview()
        out += self.how_to_read()
        out += self.timeline()
        for i, (key, title) in enumerate(self.sections(), 1):
            out += [f"## {i}. {title}", ""]
            out += self.prose(key)
            out += self.section_body(key)
        return "\n".join(out).rstrip("\n") + "\n"

    def sections(self):
        return [(k, t) for k, t in SECTIONS if self.in_section(k) or k == "closing"]

    def section_ref(self, key):
        """A link to a section by its key: `section 4`."""
        for i, (k, title) in enumerate(self.sections(), 1):
            if k == key:
                return f"[section {i}](#{anchor(title, i)})"
        return "a section below"

    def overview(self):
        out = ["## What happens", "",
               "A script (tools/walkthrough/generate.py) drove the nodes through their JSON API, "
               "the way the EchoChain clients do, one step at a time, each time waiting until the "
               "network was quiet. The sections below follow the session:", ""]
        what = {
            "join": "B, then C, join the network through A: PING, FIND_NODE and their answers; "
                    "before a node takes another into its routing table, it has it PROVE that "
                    "it holds the key of its node ID",
            "announce": "B shares the file (`local_add_file`) and stores provider records on "
                        "the nodes closest to its content ID: GET_PROVIDERS, then ANNOUNCE",
            "lookup": "C asks who provides the content ID (`local_request_content_info`), then "
                      "starts the download (`local_request_file`); the answers name B's "
                      "address and B's node ID",
            "session": "C opens a TCP connection to B and both run the Noise handshake: fresh "
                       "keys for the session, and each side proves its node ID",
            "records": "from now on only records travel, encrypted and authenticated; opened "
                       "with the key log, the first ones hold the HANDSHAKE frames",
            "manifest": "B names the file and sends its bitfield; C fetches the manifest and "
                        "checks it against the content ID",
            "interest": "C shows its (empty) bitfield; B offers chunks with HAVE; C asks to "
                        "be served and B agrees",
            "pieces": "C asks for both chunks at once; B sends them, a chunk over several "
                      "records",
            "have": "C tells B about each verified chunk, and the DHT that it provides the "
                    "content too",
            "closing": "C has everything and closes the connection",
            "other": "what else the DHT did meanwhile",
        }
        for i, (key, title) in enumerate(self.sections(), 1):
            ps = self.in_section(key)
            count = f"{len(ps)} packet{'' if len(ps) == 1 else 's'}"
            out.append(f"{i}. [{title}](#{anchor(title, i)}): {what[key]} ({count}).")
        out += ["", "Then the script stopped the nodes (SIGTERM) and the capture.", ""]
        return out

    def how_to_read(self):
        return [
            "## How to read a packet",
            "",
            "Packets are numbered in capture order. A packet here is one DHT datagram (UDP), "
            "one message of the secure session's handshake or one **record** (TCP: what "
            "travels on the wire, encrypted after the handshake), or one **wire frame** opened "
            "from the records with the key log, listed right after the record that completes "
            "it. TCP segments are not counted: the script reassembles the TCP streams, and "
            "`peershare decode --pcap` cuts them into handshake messages and records and opens "
            "the records. Each packet shows:",
            "",
            "- who sent it to whom, over UDP (the DHT) or TCP (the handshake and the records), "
            "or *decrypted* for a frame read from inside the records; its size, and one line "
            "about it (IDs and keys cut to their first 4 hex digits);",
            "- why it was sent;",
            "- its bytes: the offset of the row's first byte (decimal, from the start of the "
            f"datagram, message, record or frame), {DUMP_ROW} bytes in hex, and the same bytes "
            f"as ASCII. Packets longer than {ELIDE_OVER} bytes (the PIECEs and the records "
            f"carrying them) show their first {ELIDE_HEAD} and last bytes only; all of them are "
            "in walkthrough.bytes;",
            "- what the decoder says about those bytes: each field's offset, length, name, "
            "value and meaning, from `peershare decode --json` for a datagram or a frame, and "
            "from `peershare decode --pcap --keylog --json` for a handshake message or a record "
            "(offsets from the start of the message). `·` marks a field inside the one above "
            "it (an address inside a contact, say).",
            "",
            "To take a datagram or a frame apart yourself, paste its bytes: `peershare decode "
            "5053 0101 ...`; to read a whole capture, see secure.md section 7. A packet of the "
            "same kind, type, size and purpose as one already shown in its section is listed in "
            "one line instead, and so are most records; the timeline lists every packet.",
            "",
        ]

    def timeline(self):
        out = ["## Timeline", "",
               "Every packet; the steps of the script, in italics; and the TCP connection's "
               "opening and closing, which carry no PeerShare bytes. Times are in milliseconds "
               "since A started. A number links to the packet, shown in full, or the row is all "
               "there is of it (a packet like one shown before). ↳ marks a wire frame, read "
               "from inside the record above it.", "",
               "| # | time (ms) | from → to | message | section |",
               "| ---: | ---: | --- | --- | --- |"]
        sec_no = {k: i for i, (k, _) in enumerate(self.sections(), 1)}
        titles = dict(SECTIONS)
        rows = [(p.msg.time, 1, p.msg.index, p.n, p) for p in self.packets]
        rows += [(e.time, 1, e.index, 0, e) for e in self.events]
        rows += [(t, 0, 0, 0, what) for t, what in self.session.steps]
        for *_, x in sorted(rows, key=lambda r: r[:4]):
            if isinstance(x, str):
                out.append(f"| | {self.ms(self._step_t(x))} | | *{x}* | |")
            elif isinstance(x, Packet):
                num = f"[{x.n}](#packet-{x.n})" if x.full else f"{x.n}"
                i = sec_no[x.section]
                sec = f"[{i}](#{anchor(titles[x.section], i)})"
                mark = "↳ " if x.msg.kind == "wire" else ""
                out.append(f"| {num} | {self.ms(x.msg.time)} | {x.src} → {x.dst} | "
                           f"{mark}{code(x.summary)} | {sec} |")
            else:
                src, dst = self.ep_name(x.src), self.ep_name(x.dst)
                what = {"connect": "opens a TCP connection (SYN)",
                        "fin": "closes its side of the connection (FIN)",
                        "rst": "resets the connection (RST)"}[x.what]
                out.append(f"| | {self.ms(x.time)} | {src} → {dst} | {src} {what}, from "
                           f"`{x.src[0]}:{x.src[1]}` | |")
        out.append("")
        return out
