"""walkthrough.md and walkthrough.bytes from the captured messages and their explanations.

The formats are read back by tests/walkthrough.rs, which renders the same packet lines, dump
rows and table rows from the current decoder and compares: change them in both places.
"""

import hashlib
import struct

# ----- formats shared with tests/walkthrough.rs -------------------------------------------------

DUMP_ROW = 16  # bytes per hex-dump row
ELIDE_OVER = 512  # longer messages show their first and last bytes only
ELIDE_HEAD = 64
ELIDE_TAIL = 32


def text_cell(s):
    """Plain text in a table cell or a line: `|` would end the cell, `<` start HTML."""
    return s.replace("|", "\\|").replace("<", "&lt;")


def code(s):
    """A code span (in a table, `|` still needs its backslash)."""
    if s == "":
        return ""
    s = s.replace("|", "\\|")
    return f"`` {s} ``" if "`" in s else f"`{s}`"


def table_rows(fields, depth=0):
    """The decoder's fields as table rows: offset, length, field, value, meaning."""
    rows = []
    for f in fields:
        name = "· " * depth + code(f["name"])
        rows.append(f"| {f['offset']} | {f['length']} | {name} | {code(f['value'])} | "
                    f"{text_cell(f['meaning'])} |")
        rows.extend(table_rows(f.get("children", []), depth + 1))
    return rows


TABLE_HEAD = ["| offset | len | field | value | meaning |", "| ---: | ---: | --- | --- | --- |"]


def dump_rows(data):
    """Hex dump: decimal offset, 16 bytes in two groups of 8, the bytes as ASCII. Messages
    over ELIDE_OVER bytes: the first ELIDE_HEAD bytes, a line saying what is left out, and
    the rows holding the last ELIDE_TAIL bytes."""

    def row(off):
        chunk = data[off:off + DUMP_ROW]
        hx = " ".join(f"{b:02x}" for b in chunk[:8])
        if len(chunk) > 8:
            hx += "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        asc = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        return f"{off:>7}  {hx:<48}  |{asc}|"

    if len(data) <= ELIDE_OVER:
        return [row(o) for o in range(0, len(data), DUMP_ROW)]
    tail = (len(data) - ELIDE_TAIL) // DUMP_ROW * DUMP_ROW
    rows = [row(o) for o in range(0, ELIDE_HEAD, DUMP_ROW)]
    rows.append(f"      … {tail - ELIDE_HEAD} bytes not shown: offsets {ELIDE_HEAD} to {tail - 1} …")
    rows += [row(o) for o in range(tail, len(data), DUMP_ROW)]
    return rows


# ----- reading messages --------------------------------------------------------------------------

DHT_NAMES = {1: "PING", 2: "PONG", 3: "FIND_NODE", 4: "NODES", 5: "GET_PROVIDERS",
             6: "PROVIDERS", 7: "ANNOUNCE", 8: "ACK", 0x7F: "ERROR"}
CHUNK_SIZE = 262144


def u32(b, at):
    return struct.unpack(">I", b[at:at + 4])[0]


def read_addr(b, at):
    """(\"ip:port\", next offset) of an address (overview.md, section 4)."""
    if b[at] == 4:
        ip = ".".join(str(x) for x in b[at + 1:at + 5])
        return f"{ip}:{struct.unpack('>H', b[at + 5:at + 7])[0]}", at + 7
    return "[ipv6]:" + str(struct.unpack(">H", b[at + 17:at + 19])[0]), at + 19


def read_contacts(b, at):
    n, at, out = b[at], at + 1, []
    for _ in range(n):
        cid = b[at:at + 32].hex()
        addr, at = read_addr(b, at + 32)
        out.append((cid, addr))
    return out, at


def assemble_manifest(messages, explained):
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


def _leaves(fields):
    for f in fields:
        yield f
        yield from _leaves(f.get("children", []))


def leading_zero_bits(a, b):
    x = int(a, 16) ^ int(b, 16)
    return 256 - x.bit_length()


class Packet:
    def __init__(self, n, msg, ex):
        self.n, self.msg, self.ex = n, msg, ex
        m = ex["messages"][0]
        self.name, self.summary, self.notes = m["name"], m["summary"], m.get("notes", [])
        self.fields = m["fields"]
        d = msg.data
        if msg.kind == "dht":
            self.type = d[3]
            self.txid = d[5:13].hex()
            self.sender = d[13:45].hex()
            self.body = d[45:]
        else:
            self.type = d[4]
            self.body = d[5:]
        self.section = None
        self.full = True
        self.note = ""
        self.answers = None  # the request this answers
        self.answer = None  # the answer to this request
        self.src = self.dst = "?"

    @property
    def proto(self):
        return "UDP" if self.msg.kind == "dht" else "TCP"

    def line(self):
        return (f"{self.src} → {self.dst} ({self.proto}, {len(self.msg.data)} bytes): "
                f"{code(self.summary)}")


SECTIONS = [
    ("join", "Joining the network"),
    ("announce", "Announcing: B tells the DHT it has the file"),
    ("lookup", "Looking up: C asks who has it"),
    ("handshake", "Connecting, and the handshake"),
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


class Document:
    def __init__(self, session, messages, events, explained, manifest, manifest_ex, file_bytes):
        self.session = session
        self.events = events
        self.manifest, self.manifest_ex = manifest, manifest_ex
        self.file = file_bytes
        # Times are from A's start, the session's first step.
        self.t0 = session.steps[0][0] if session.steps else messages[0].time
        self.nodes = session.nodes
        self.by_port = {n.port: n.name for n in self.nodes.values()}
        self.by_id = {n.node_id: n.name for n in self.nodes.values()}
        self.packets = [Packet(i, m, ex) for i, (m, ex) in enumerate(zip(messages, explained), 1)]
        self._name_endpoints()
        self._pair_requests()
        self._classify()
        self._choose_full()
        for p in self.packets:
            p.note, p.short = self._note(p)
        self.full = [p for p in self.packets if p.full]
        self.check_story()

    def check_story(self):
        """The prose below tells the session as it went when it was written. Stops with what
        changed if this capture went otherwise, so the page never says something untrue."""
        problems = []
        for p in self.packets:
            if p.src not in "ABC" or p.dst not in "ABC":
                problems.append(f"packet {p.n} is from {p.src} to {p.dst}, not between A, B, C")
        first = self.packets[0] if self.packets else None
        if not first or (first.name, first.src, first.dst) != ("PING", "B", "A"):
            problems.append("the first packet is not B's PING to A")
        for key, _ in SECTIONS[:8]:
            if not self.in_section(key):
                problems.append(f"section {key!r} has no packets")
        provs = {p.src: p for p in self.in_section("lookup") if p.name == "PROVIDERS"}
        b_addr = f"127.0.0.1:{self.nodes['B'].port}"
        for who, want in (("B", "0.0.0.0:"), ("A", b_addr)):
            p = provs.get(who)
            if p is None or want not in "".join(f["value"] for f in _leaves(p.fields)):
                problems.append(f"in the lookup, {who}'s PROVIDERS does not list {want}")
        acks = {p.src for p in self.in_section("announce") if p.name == "ACK"}
        if acks != {"A", "C"}:
            problems.append(f"B's announce is acknowledged by {sorted(acks)}, not A and C")
        hs = [p for p in self.packets if p.name == "HANDSHAKE" and p.msg.kind == "wire"]
        if [(p.src, p.dst) for p in hs] != [("C", "B"), ("B", "C")]:
            problems.append("the wire connection is not C's HANDSHAKE to B, answered by B")
        if problems:
            raise SystemExit("the session no longer goes the way walkthrough.md tells it; "
                             "update the prose in tools/walkthrough/render.py:\n- "
                             + "\n- ".join(problems))

    # ----- who is who ----------------------------------------------------------------------

    def _name_endpoints(self):
        names = {}
        for p in self.packets:
            if p.msg.kind == "wire" and p.type == 0x01 and p.msg.src not in names:
                names[p.msg.src] = self.by_id.get(p.body[6:38].hex(), "?")
        self.conn_ends = {}  # connection number -> (connecting endpoint, accepting endpoint)
        for e in self.events:
            if e.what == "connect":
                self.conn_ends[e.conn] = (e.src, e.dst)

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

    # ----- sections ------------------------------------------------------------------------

    def _classify(self):
        first_provider = next((p.n for p in self.packets if p.msg.kind == "dht"
                               and p.type in (5, 6, 7, 8)), None)
        connect = min((e.time for e in self.events if e.what == "connect"), default=None)
        for p in self.packets:
            if p.msg.kind == "dht":
                if p.type in (1, 2, 3, 4):
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
                continue
            accepting = p.msg.src[1] in self.by_port
            p.section = {
                0x01: "handshake",
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

    def _choose_full(self):
        """Each packet is shown in full unless one of the same type and size came earlier in
        its section: the later ones are listed on one line."""
        seen = set()
        for p in self.packets:
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

    # ----- notes: why each packet is sent -----------------------------------------------------

    def ref(self, p):
        if p is None:
            return "an earlier packet"
        return f"[packet {p.n}](#packet-{p.n})" if p.full else f"packet {p.n}"

    def who_addr(self, addr):
        port = int(addr.rsplit(":", 1)[1])
        if addr.startswith("0.0.0.0"):
            return f"`{addr}`"
        name = self.by_port.get(port)
        return f"{name} (`{addr}`)" if name else f"`{addr}`"

    def variant(self, p):
        """What a packet is for, beyond its type: packets of one type and size but of
        different variants are each shown in full once."""
        if p.name == "PING":
            first = next(q for q in self.packets if q.msg.kind == "dht" and q.src == p.src)
            return "bootstrap" if first is p else "address"
        if p.name == "FIND_NODE":
            return "self" if p.body[:32].hex() == p.sender else "refresh"
        if p.name == "HANDSHAKE":
            return "connect" if p.msg.src == self.conn_ends.get(p.msg.conn, (None,))[0] else "accept"
        if p.name in ("BITFIELD", "HAVE"):
            return "connect" if p.msg.src == self.conn_ends.get(p.msg.conn, (None,))[0] else "accept"
        return ""

    def _note(self, p):
        """Why the packet was sent: (a few sentences, a few words)."""
        x, y = p.src, p.dst
        ans = f" Answered by {self.ref(p.answer)}." if p.answer else ""
        ans_s = f"; answered by {self.ref(p.answer)}" if p.answer else ""
        re = self.ref(p.answers) if p.answers else None
        v = self.variant(p)
        if p.msg.kind == "dht":
            if p.name == "PING" and v == "bootstrap" and y == "A":
                return (f"{x}'s first datagram. {x} knows A only by the address it was given "
                        f"(`--bootstrap 127.0.0.1:{self.nodes['A'].port}`), not by its ID: a "
                        f"PING is the smallest request, and any answer carries the responder's "
                        f"ID in its header.{ans}",
                        f"{x} PINGs its bootstrap address{ans_s}")
            if p.name == "PING":
                return (f"{x} asks {y} at which address it sees {x} (the PONG's `observed`). "
                        f"A node believes an address is its public one only when two peers "
                        f"agree on it (dht.md, section 12), so it pings its closest contacts "
                        f"until then.{ans}",
                        f"{x} asks {y} at which address it sees {x}{ans_s}")
            if p.name == "PONG":
                return (f"Answers {re}, with the same txid. `observed` is where the PING came "
                        f"from as {x} saw it; on loopback there is no NAT, so it is {y}'s own "
                        f"address. {x} is now a contact of {y}: it answered a request.",
                        f"answers {re}")
            if p.name == "FIND_NODE" and v == "self":
                return (f"{x} looks up its own ID: the target is {x}'s node ID. The nodes "
                        f"closest to it are the ones {x} shares the space with; asking for "
                        f"them fills {x}'s nearest buckets, and makes {x} known to them "
                        f"(dht.md, section 11).{ans}",
                        f"{x} looks up its own ID{ans_s}")
            if p.name == "FIND_NODE":
                i = leading_zero_bits(p.body[:32].hex(), p.sender)
                return (f"{x} refreshes bucket {i} of its routing table: the target is a "
                        f"random ID whose distance to {x}'s ID has {i} leading zero bits, the "
                        f"range of bucket {i}. A bucket in which no lookup has happened is "
                        f"refreshed this way, and a new node's buckets have seen none "
                        f"(dht.md, section 11).{ans}",
                        f"{x} refreshes its bucket {i}{ans_s}")
            if p.name == "NODES":
                contacts, _ = read_contacts(p.body, 0)
                if not contacts:
                    return (f"Answers {re}: no contacts. {x} knows nobody but {y}, and never "
                            f"lists the requester itself (dht.md, section 8).",
                            f"answers {re}: nobody")
                names = ", ".join(self.by_id.get(c, c[:8] + "…") + f" (`{a}`)"
                                  for c, a in contacts)
                short = ", ".join(self.by_id.get(c, c[:8] + "…") for c, _ in contacts)
                return (f"Answers {re}: the contacts {x} knows closest to the target, closest "
                        f"first, never {y} itself: {names}. They are only candidates for {y} "
                        f"until they answer {y} themselves.",
                        f"answers {re}: {short}")
            if p.name == "GET_PROVIDERS":
                if p.section == "announce":
                    return (f"Step 1 of the announce: {x} asks {y} who provides the content "
                            f"ID and, above all, for a token to announce it there later.{ans}",
                            f"{x}'s announce, step 1{ans_s}")
                if p.section == "have":
                    return (f"C now holds a verified chunk, so it provides the content too. "
                            f"Like B in section 2, it first looks up the content ID to collect "
                            f"tokens from the closest nodes.{ans}",
                            f"C's announce, step 1{ans_s}")
                return (f"{x} asks {y} who provides the content ID (the `key`).{ans}",
                        f"{x} asks who provides the content{ans_s}")
            if p.name == "PROVIDERS":
                b = p.body
                token = b[:16].hex()
                n, at, provs = b[16], 17, []
                for _ in range(n):
                    a, at = read_addr(b, at)
                    provs.append(a)
                contacts, _ = read_contacts(b, at)
                parts = [f"Answers {re}. The token `{token[:8]}…` is good for {y}'s address "
                         f"only, for 5 to 10 minutes."]
                short = []
                if provs:
                    ps = []
                    for a in provs:
                        if a.startswith("0.0.0.0"):
                            ps.append(f"`{a}`, that is {x} itself: \"me, at the address this "
                                      f"datagram comes from\" (dht.md, section 4.6)")
                            short.append(f"{x} itself")
                        else:
                            ps.append(f"{self.who_addr(a)}, a record {x} stores")
                            short.append(self.who_addr(a))
                    parts.append("Providers: " + "; ".join(ps) + ".")
                else:
                    parts.append("No providers yet.")
                if contacts:
                    cs = ", ".join(self.by_id.get(c, c[:8] + "…") for c, _ in contacts)
                    parts.append(f"Closer contacts, for the lookup to go on: {cs}.")
                prov = "providers: " + ", ".join(short) if short else "no providers"
                return " ".join(parts), f"answers {re}: a token, {prov}"
            if p.name == "ANNOUNCE":
                tok = p.body[32:48].hex()
                same = [q for q in self.packets[:p.n - 1] if q.name == "PROVIDERS"
                        and q.msg.kind == "dht" and q.body[:16].hex() == tok
                        and q.src == y and q.dst == x]
                given = same[-1] if same else None
                also = ""
                if len(same) > 1:
                    refs = ", ".join(self.ref(q) for q in same[:-1])
                    also = (f" (the same token as in {refs}: it depends only on {x}'s address "
                            f"and {y}'s current secret)")
                return (f"Step 2: {x} tells {y} it provides the content ID, with the token "
                        f"{y} gave it in {self.ref(given)}{also}. `port` 0 means \"the port "
                        f"this datagram comes from\": {x}'s TCP port is its UDP port.{ans}",
                        f"{x}'s announce, step 2, with the token of {self.ref(given)}{ans_s}")
            if p.name == "ACK":
                return (f"Answers {re}: {x} stores the record ({y}'s IP address and port, "
                        f"under the content ID) for 2 hours, unless {y} republishes it "
                        f"(every 30 minutes).",
                        f"answers {re}: {x} stores the record")
            return "", ""
        # wire frames
        sent_before = [q for q in self.packets[:p.n - 1] if q.msg.kind == "wire"]
        if p.name == "HANDSHAKE" and v == "connect":
            port = struct.unpack(">H", p.body[70:72])[0]
            return (f"{x}'s first frame on the new connection: who it is (`node_id`, its DHT "
                    f"ID), which content the connection is about (`content_id`) and the port "
                    f"it accepts connections on ({port}; the same port as its DHT).",
                    f"{x} opens the conversation")
        if p.name == "HANDSHAKE":
            return (f"{x} holds the verified manifest of this content and serves it, so it "
                    f"answers with its own HANDSHAKE, naming the same content ID. Otherwise it "
                    f"would have sent ERROR UNKNOWN_CONTENT and closed.",
                    f"{x} answers: it serves this content")
        if p.name == "METADATA":
            return (f"The file name, as {x} calls it. It is not part of the content ID, so "
                    f"nobody can verify it: {y} sanitizes it before using it as a file name "
                    f"(content.md, section 7).", "the file name")
        if p.name == "BITFIELD":
            have = sum(bin(b).count("1") for b in p.body[4:])
            count = u32(p.body, 0)
            if v == "accept" and have == 0 and x == "B":
                return (f"{x} holds all {count} chunks, yet its BITFIELD shows none: {x} "
                        f"**super-seeds** (wire.md, section 11). Instead of announcing every "
                        f"chunk at once, it will offer a few at a time with HAVE, those the "
                        f"swarm has fewest copies of first, so its upload goes to chunks "
                        f"nobody else can give. A BITFIELD also proves that {x} holds the "
                        f"verified manifest: only now may {y} ask for it.",
                        f"{x} shows no chunks (it super-seeds)")
            if v == "accept":
                return (f"{x} has {have} of {count} chunks. A BITFIELD also proves that {x} "
                        f"holds the verified manifest: only now may {y} ask for it.",
                        f"{x} has {have} of {count} chunks")
            return (f"{x} has verified the manifest, so it sends its own BITFIELD: {have} of "
                    f"{count} chunks.", f"{x} has {have} of {count} chunks")
        if p.name == "MANIFEST_REQUEST":
            return (f"{x} knows only the content ID. It asks for the manifest from offset 0, "
                    f"262144 bytes (the most one answer may carry), since it does not know "
                    f"the manifest's size yet.", "part of the manifest, please")
        if p.name == "MANIFEST_DATA":
            total = u32(p.body, 0)
            return (f"The whole manifest, {total} bytes, fits in one answer. {y} checks that "
                    f"its SHA-256 is the content ID before it believes a word of it.",
                    "part of the manifest")
        if p.name == "INTERESTED":
            return f"{y} has chunks {x} lacks.", f"{y} has chunks {x} lacks"
        if p.name == "UNCHOKE":
            return (f"{x} gives {y} an upload slot: from now on it serves {y}'s requests.",
                    f"{x} serves {y}'s requests")
        if p.name == "CHOKE":
            return (f"{y} wants nothing more, so {x} takes back its upload slot: it will serve "
                    f"no more of {y}'s requests.", f"{x} serves {y} no more")
        if p.name == "NOT_INTERESTED":
            return (f"{x} has every chunk now: {y} has nothing {x} lacks.",
                    f"{y} has nothing {x} lacks")
        if p.name == "REQUEST":
            chunk = u32(p.body, 0)
            pending = [q for q in sent_before if q.name == "REQUEST" and q.src == x]
            pipelined = pending and not any(q.name == "PIECE" for q in sent_before)
            extra = (" It goes out before any PIECE has come back: requests are pipelined."
                     if pipelined else "")
            return (f"{x} asks for chunk {chunk}, whole.{extra}",
                    f"chunk {chunk}, please" + (" (pipelined)" if pipelined else ""))
        if p.name == "PIECE":
            chunk = u32(p.body, 0)
            req = next((q for q in reversed(sent_before) if q.name == "REQUEST"
                        and u32(q.body, 0) == chunk), None)
            size = len(p.body) - 4
            digest = hashlib.sha256(p.body[4:]).hexdigest()
            return (f"Chunk {chunk}, {size} bytes, answering {self.ref(req)}. {y} checks "
                    f"that its SHA-256 is chunk {chunk}'s hash in the manifest before it "
                    f"counts, is stored, or is served to anyone: here `{digest[:16]}…`, as in "
                    f"[the manifest](#the-manifest).",
                    f"chunk {chunk}, answering {self.ref(req)}")
        if p.name == "HAVE" and v == "accept":
            chunk = u32(p.body, 0)
            return (f"An **offer**: {x} tells {y} it has chunk {chunk}, so {y} may ask for it. "
                    f"A super-seeding node offers a peer one chunk while it is choked (enough "
                    f"to make it interested); once unchoked, a few at a time and one more for "
                    f"every REQUEST, so that downloaders are offered different chunks first "
                    f"and trade them among themselves. A peer alone in wanting the content, "
                    f"as {y} is here, has nobody to trade with: once unchoked it is offered "
                    f"every chunk at once.",
                    f"{x} offers chunk {chunk}")
        if p.name == "HAVE":
            chunk = u32(p.body, 0)
            return (f"{x} has verified chunk {chunk} and tells every peer of the content, "
                    f"here only {y}, which has it already but counts the copies in the swarm.",
                    f"{x} has verified chunk {chunk}")
        if p.name == "ERROR":
            code_ = struct.unpack(">H", p.body[:2])[0]
            text = p.body[3:3 + p.body[2]].decode("utf-8", "replace")
            return (f"{x} closes the connection and says why: error code {code_} for programs, "
                    f"\"{text}\" for people. Nothing follows an ERROR.",
                    f"{x} closes the connection")
        return "", ""

    # ----- the bytes file ---------------------------------------------------------------------

    def bytes_line(self, p):
        d = p.msg.data
        if p.msg.kind == "wire" and p.type == 0x08 and len(d) > ELIDE_OVER:
            chunk = u32(d, 5)
            off, data = chunk * CHUNK_SIZE, d[9:]
            if self.file[off:off + len(data)] == data:
                sha = hashlib.sha256(d).hexdigest()
                return f"{p.n} wire {d[:9].hex()}[file:{off}:{len(data)}] sha256:{sha}"
        return f"{p.n} {p.msg.kind} {d.hex()}"

    def bytes_file(self):
        lines = [
            "# The captured messages of walkthrough.md, one per line: `N KIND HEX`, in capture",
            "# order. KIND is dht (one UDP datagram) or wire (one wire frame cut from the TCP",
            "# stream). In HEX, `[file:OFFSET:LENGTH]` stands for LENGTH bytes of the shared",
            "# file from OFFSET (the file: walkthrough.md, The cast); `sha256:` is the SHA-256",
            "# of the whole captured message, to check the stand-in gives the exact bytes.",
            "# Generated by tools/walkthrough/generate.py (make walkthrough); do not edit.",
            "# tests/walkthrough.rs decodes every message again and checks walkthrough.md.",
        ]
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
            else:
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
        s = self.session
        a, b, c = (self.nodes[k] for k in "ABC")
        m = self.manifest
        n_chunks = u32(m, 17) if m else 0
        out = [
            "# Walkthrough: one real session, packet by packet",
            "",
            "<!-- Generated by tools/walkthrough/generate.py from a real capture: do not edit. "
            "`make walkthrough` regenerates it; `cargo test --test walkthrough` checks it. -->",
            "",
            "This page follows one real PeerShare session from its first datagram to its last "
            "frame. Three nodes ran on one machine, on loopback; `dumpcap` recorded everything "
            "they said to each other; every DHT datagram and every wire frame of that recording "
            "is below, in the order it was captured, hex-dumped and explained field by field by "
            "`peershare decode`. It is [dht.md](dht.md), [wire.md](wire.md) and "
            "[content.md](content.md) in action: they give the rules, this page shows them "
            "being followed.",
            "",
            "The page is generated by [`tools/walkthrough/generate.py`]"
            "(../tools/walkthrough/generate.py) from the capture, and checked by "
            "`cargo test --test walkthrough`: every message's exact bytes are in "
            "[walkthrough.bytes](walkthrough.bytes), and the test decodes them again with the "
            "current decoder and fails if a table here no longer says what `peershare decode` "
            "says. When the protocol or the decoder changes, `make walkthrough` captures a new "
            "session. Node IDs, transaction IDs and tokens are random, so they change with every "
            "capture; the file, its content ID and the course of the session do not.",
            "",
            "## The cast",
            "",
            "| node | role | node ID | port |",
            "| --- | --- | --- | --- |",
            f"| A | the first node, started alone: no bootstrap address | `{a.node_id}` | {a.port} |",
            f"| B | the seeder: joins through A, shares the file | `{b.node_id}` | {b.port} |",
            f"| C | the downloader: joins through A, finds the file and downloads it | "
            f"`{c.node_id}` | {c.port} |",
            "",
            f"All three run on 127.0.0.1, each with one port for both protocols: the DHT on "
            f"UDP and the wire protocol on TCP (`peershare run --port {a.port}`, ...; B and C "
            f"with `--bootstrap 127.0.0.1:{a.port}`).",
            "",
            f"The file, `walkthrough.bin`, is {len(self.file)} bytes: SHA-256(\"peershare "
            f"walkthrough\" followed by a counter i as 8 bytes, big-endian) for i = 0, 1, 2, ..., "
            f"cut to length. They look random but are the same on every run, and so are the "
            f"manifest and the content ID. Files of up to 2 GiB are cut into chunks of 262144 "
            f"bytes (content.md, section 3), so this one has {n_chunks} chunks, of 262144 and "
            f"{len(self.file) - CHUNK_SIZE} bytes, and a manifest of {len(m) if m else 0} bytes "
            f"whose SHA-256 is the content ID:",
            "",
            f"`{s.content_id}`",
            "",
        ]
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

    def overview(self):
        out = ["## What happens", "",
               "A script (tools/walkthrough/generate.py) drove the nodes through their JSON API, "
               "the way the EchoChain clients do, one step at a time, each time waiting until the "
               "network was quiet. The sections below follow the session:", ""]
        what = {
            "join": "B, then C, join the network through A: PING, FIND_NODE and their answers",
            "announce": "B shares the file (`local_add_file`) and stores provider records on "
                        "the nodes closest to its content ID: GET_PROVIDERS, then ANNOUNCE",
            "lookup": "C asks who provides the content ID (`local_request_content_info`), then "
                      "starts the download (`local_request_file`)",
            "handshake": "C opens a TCP connection to B; both say who they are and which "
                         "content the connection is about",
            "manifest": "B names the file and sends its bitfield; C fetches the manifest and "
                        "checks it against the content ID",
            "interest": "C shows its (empty) bitfield; B offers chunks with HAVE; C asks to "
                        "be served and B agrees",
            "pieces": "C asks for both chunks at once; B sends them",
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
            "Packets are numbered in capture order, counting DHT datagrams and wire frames (not "
            "TCP segments: a frame may span several segments, and a segment may hold several "
            "frames; the script reassembles the TCP streams and cuts them into frames). Each "
            "packet shows:",
            "",
            "- who sent it to whom, over UDP (the DHT) or TCP (the wire protocol), its size, and "
            "the one line `peershare decode` gives for it (IDs cut to their first 4 hex digits);",
            "- why it was sent;",
            "- its bytes: the offset of the row's first byte (decimal, from the start of the "
            f"datagram or frame), {DUMP_ROW} bytes in hex, and the same bytes as ASCII. Messages "
            f"longer than {ELIDE_OVER} bytes (the PIECEs) show their first {ELIDE_HEAD} and last "
            "bytes only; all of them are in walkthrough.bytes;",
            "- what `peershare decode --json` says about those bytes: each field's offset, length, "
            "name, value and meaning. `·` marks a field inside the one above it (an address "
            "inside a contact, say).",
            "",
            "To take a packet apart yourself, paste its bytes: `peershare decode 5053 0101 ...`. "
            "A packet of the same type, size and purpose as one already shown in its section is "
            "listed in one line instead; the timeline lists every packet.",
            "",
        ]

    def timeline(self):
        out = ["## Timeline", "",
               "Every packet; the steps of the script, in italics; and the TCP connection's "
               "opening and closing, which carry no PeerShare bytes. Times are in milliseconds "
               "since A started. A number links to the packet, shown in full, or the row is all "
               "there is of it (a packet like one shown before).", "",
               "| # | time (ms) | from → to | message | section |",
               "| ---: | ---: | --- | --- | --- |"]
        sec_no = {k: i for i, (k, _) in enumerate(self.sections(), 1)}
        titles = dict(SECTIONS)
        rows = [(p.msg.time, 1, p.msg.index, p) for p in self.packets]
        rows += [(e.time, 1, e.index, e) for e in self.events]
        rows += [(t, 0, 0, what) for t, what in self.session.steps]
        for _, _, _, x in sorted(rows, key=lambda r: r[:3]):
            if isinstance(x, str):
                out.append(f"| | {self.ms(self._step_t(x))} | | *{x}* | |")
            elif isinstance(x, Packet):
                num = f"[{x.n}](#packet-{x.n})" if x.full else f"{x.n}"
                i = sec_no[x.section]
                sec = f"[{i}](#{anchor(titles[x.section], i)})"
                out.append(f"| {num} | {self.ms(x.msg.time)} | {x.src} → {x.dst} | "
                           f"{code(x.summary)} | {sec} |")
            else:
                src, dst = self.ep_name(x.src), self.ep_name(x.dst)
                what = {"connect": "opens a TCP connection (SYN)",
                        "fin": "closes its side of the connection (FIN)",
                        "rst": "resets the connection (RST)"}[x.what]
                out.append(f"| | {self.ms(x.time)} | {src} → {dst} | {src} {what}, from "
                           f"`{x.src[0]}:{x.src[1]}` | |")
        out.append("")
        return out

    # ----- the prose of each section ----------------------------------------------------------

    def prose(self, key):
        f = getattr(self, "prose_" + key)
        return f() + [""]

    def prose_join(self):
        ps = self.in_section("join")
        b_ps = [p for p in ps if "C" not in (p.src, p.dst)]
        c_ps = [p for p in ps if "C" in (p.src, p.dst)]
        a = self.nodes["A"].port
        return [
            "A node that joins knows one thing: the address of a node already in the network, "
            f"its bootstrap address (`--bootstrap 127.0.0.1:{a}`). It does not know that node's "
            "ID. A started alone and sent nothing: it had nobody to talk to. B's join "
            f"(packets {self.nums(b_ps)}) then goes like this:",
            "",
            "1. **B PINGs the bootstrap address.** Every datagram carries its sender's ID in its "
            "45-byte header, so A's PONG tells B A's ID, and B adds A to its routing table. A "
            "node adds a contact to its table when the contact answers one of its requests, or "
            "when a request comes from it and there is room: here A adds B too.",
            "2. **B looks up its own ID** (a FIND_NODE whose target is B's ID). The nodes "
            "closest to B's ID are the ones B will share the work with; asking for them fills "
            "B's nearest buckets and tells each of them about B. With only A in the network, "
            "A's NODES answer is empty: it knows nobody but B, and never lists the requester.",
            "3. **B refreshes its buckets**: one FIND_NODE for a random ID in the range of each "
            "bucket up to its deepest non-empty one. A, which has just gained its first "
            "contact, refreshes its own buckets the same way, and PINGs B: the PONG tells A "
            "at which address B sees A.",
            "",
            "Every datagram is a request or a response. A request has an odd type (PING 0x01, "
            "FIND_NODE 0x03, GET_PROVIDERS 0x05, ANNOUNCE 0x07) and a transaction ID (txid) "
            "chosen at random by the requester; the response has the next even type and the "
            "same txid, and goes back to the address the request came from. The txid is how "
            "a node matches answers to its requests, and its 64 random bits make an answer "
            "hard to forge for anyone who did not see the request.",
            "",
            f"C joins the same way (packets {self.nums(c_ps)}), but now A knows B: A's NODES "
            "answers name B, so C learns of B through A and asks B as well. That is how a "
            "Kademlia network grows: every lookup introduces the nodes it passes through. At "
            "the end every node has the two others in its routing table.",
            "",
        ]

    def prose_announce(self):
        gp = self.first("announce", "GET_PROVIDERS")
        an = self.first("announce", "ANNOUNCE")
        return [
            "`local_add_file` makes B hash the file (one SHA-256 per chunk, one for the whole "
            "file), which gives the manifest and so the content ID. Then B *announces* it: it "
            "stores a **provider record**, \"127.0.0.1:4002 provides this content ID\", on the "
            "nodes whose IDs are closest to the content ID. Node IDs and content IDs live in "
            "the same 256-bit space, and every lookup for an ID converges on the same nodes, "
            "the closest to it by XOR distance, whoever starts it: so those are the nodes any "
            "downloader's lookup will reach (overview.md, section 2).",
            "",
            "An announce is two steps (dht.md, section 10):",
            "",
            f"1. a GET_PROVIDERS lookup for the content ID (from {self.ref(gp)}), which finds "
            "the k = 20 closest nodes (here all the network has: A and C) and collects a "
            "**token** from each answer;",
            f"2. an ANNOUNCE to each of them (from {self.ref(an)}), with the token that node "
            "gave, answered by ACK.",
            "",
            "Why a token: it is the first 16 bytes of an HMAC of B's IP address and port, under "
            "a secret that only the node that issued it knows and that changes every 5 minutes. "
            "Sending it back proves that B really receives datagrams at the address it "
            "announces from. Without it anyone could announce somebody else's address as a "
            "provider and aim every downloader at a victim. And since the token is computed, "
            "not stored, a node keeps no state for the GET_PROVIDERS it answers.",
            "",
        ]

    def prose_lookup(self):
        ps = self.in_section("lookup")
        t_file = self.step_time("local_request_file")
        first = [p for p in ps if t_file is None or (p.answers or p).msg.time < t_file]
        second = [p for p in ps if p not in first]
        out = [
            f"`local_request_content_info` makes C run a GET_PROVIDERS lookup for the content "
            f"ID (packets {self.nums(first)}). Both nodes it asks know a provider:",
            "",
            "- B *is* one. It lists itself first, as `0.0.0.0:0`: \"me, at the address this "
            "answer comes from\". A node does not reliably know its own public address (it may "
            "be behind a NAT), but C has just received a datagram from it.",
            "- A stores the record B placed on it in section 2: `127.0.0.1:4002`.",
            "",
            "So C answers its API client with B's address. Each PROVIDERS also carries a token "
            "for C, of no use yet since C has nothing to announce, and the contacts closest to "
            "the content ID, with which a lookup in a larger network would go on.",
            "",
        ]
        if second:
            out += [
                f"`local_request_file` then starts the download, and a download begins with "
                f"its own lookup for providers (packets {self.nums(second)}): the download "
                f"does not depend on an earlier answer still being true.",
                "",
            ]
        return out

    def prose_handshake(self):
        conn = next((e for e in self.events if e.what == "connect"), None)
        src = f"`{conn.src[0]}:{conn.src[1]}`" if conn else "an ephemeral port"
        return [
            f"C opens a TCP connection to B's port {self.nodes['B'].port}, from {src}, a port "
            "the kernel picked. TCP's SYN, SYN-ACK and ACK carry no PeerShare bytes, so they "
            "are not packets here (the timeline shows the opening).",
            "",
            "From now on everything travels in **frames**: a 4-byte length (of what follows), a "
            "type byte, the body. TCP is a stream of bytes with no boundaries of its own; the "
            "length tells the receiver where each frame ends, and lets it refuse an oversized "
            "frame from its first 5 bytes, before buffering it (wire.md, section 2). There are "
            "no txids: TCP delivers in order, to the right peer, so a PIECE is matched to its "
            "REQUEST by the chunk index.",
            "",
            "The connecting side speaks first, with a HANDSHAKE; the accepting side answers "
            "with its own only if it holds the verified manifest of the content named and "
            "serves it. A connection is about one content ID; the version is agreed here, once, "
            "not repeated in every frame; and `listen_port` tells B where C accepts connections "
            "(C's source port is an ephemeral one nobody can connect to).",
            "",
        ]

    def prose_manifest(self):
        pieces = [p for p in self.in_section("manifest") if p.name == "MANIFEST_DATA"]
        return [
            "Right after its HANDSHAKE, B sends the file's name (METADATA, optional) and its "
            "BITFIELD (empty, although B has every chunk: section 6 says why). C, though, has nothing to compare a bitfield with yet: all it knows is "
            "the 32-byte content ID. It needs the **manifest**: the file size, the chunk size, "
            "the SHA-256 of the whole file and of every chunk (content.md, section 2).",
            "",
            "C asks for it with MANIFEST_REQUEST and gets it in MANIFEST_DATA. The first thing "
            "C does with it is check that its SHA-256 equals the content ID, before it uses any "
            "of it. That check is what makes everything else safe: the content ID is the hash "
            "of the manifest, so no peer can hand C a different manifest; and the manifest holds "
            "the hash of every chunk, so no peer can hand C a different chunk either. Every "
            "byte C will receive is checked against the one value it started from. A peer whose "
            "manifest does not match is banned.",
            "",
            "Manifests can be large (32 bytes per chunk, up to 32 MiB), hence requests by "
            "offset and length, in pieces of at most 256 KiB"
            + ("; this one fits in one piece." if len(pieces) == 1 else "."),
            "",
        ]

    def prose_interest(self):
        return [
            "With the manifest verified, C sends its own BITFIELD (it has nothing yet). Now "
            "that B knows what C lacks, it **offers** chunks with HAVE: B is a seed that "
            "super-seeds (wire.md, section 11). When a seed's upload is the scarce resource, "
            "every byte it sends of a chunk the swarm already holds is a byte the downloaders "
            "could have had from each other; so it announces nothing in its BITFIELD and "
            "offers each peer a few chunks at a time, those with the fewest copies in the "
            "swarm first. Nothing new is on the wire: to C, B is a peer that announces chunks "
            "as it gets them. C says it is INTERESTED: B has chunks it lacks. B UNCHOKEs C and "
            "offers more.",
            "",
            "**Choking** is how a node shares its upload bandwidth (wire.md, section 8): every "
            "connection starts with each side choking the other, and a node serves requests "
            "only from peers it has unchoked. Sending to a few peers at full speed works "
            "better than to all at a trickle (TCP shares a link badly between many flows, and "
            "a chunk is of use only when complete). Interest tells a node which peers would use "
            "a slot at all.",
            "",
        ]

    def prose_pieces(self):
        return [
            "C asks for chunks with REQUEST and B answers each with a PIECE carrying the whole "
            "chunk. Several requests are in flight at once (**pipelining**): with one at a time "
            "the link would idle for a round trip after every chunk. Which chunk first is the "
            "downloader's choice: the rarest among its peers, from a random start, so that "
            "downloaders starting together do not all ask for the same chunk (wire.md, "
            "section 11), among the chunks its peers have announced, here those B offered.",
            "",
            "A chunk always comes whole from one peer, so a chunk that fails its check names "
            "the peer that sent it, and that peer is banned. A chunk counts only after its "
            "SHA-256 matched the manifest: before that it is not stored as part of the file, "
            "not announced, not served.",
            "",
        ]

    def prose_have(self):
        return [
            "Each time C has verified a chunk it sends HAVE to its peers of the content, so "
            "that their view of who has what stays right (for rarest first) and peers that lack "
            "the chunk become interested. Here C's only peer is B, which has everything, and "
            "the HAVEs still matter to it: a super-seeding seed counts who has which chunk to "
            "choose what to offer next (wire.md, section 11).",
            "",
            "With its first verified chunk, C can serve the content too, so it also tells the "
            "DHT: the same GET_PROVIDERS lookup and ANNOUNCE as B in section 2, this time from "
            "C. Its datagrams go out while the transfer goes on over TCP: the numbers show how "
            "they interleave. From now on a lookup for the content ID finds both B and C.",
            "",
        ]

    def prose_closing(self):
        fins = [e for e in self.events if e.what in ("fin", "rst")]
        err = self.first("closing", "ERROR")
        out = [
            "With every chunk verified, C is NOT_INTERESTED any more, and B, whose only peer "
            "wants nothing, CHOKEs it. C checks the SHA-256 of the whole file against the "
            "manifest's `file_sha256`, and only then gives the file its final name.",
            "",
        ]
        if err:
            out += [
                f"Then {err.src} closes the connection ({self.ref(err)}): a downloader that has "
                f"the whole file has no use for a peer that has it too, nor that peer for it, "
                f"hence the code COMPLETE. "
                f"Either side may close a connection that is no longer useful (wire.md, section "
                f"10); an ERROR frame says why, for logs, and nothing follows it (wire.md, "
                f"section 4.17).",
                "",
            ]
        if fins:
            out += ["Both sides then close their half of the TCP connection (FIN): see the "
                    "end of the timeline.", ""]
        stop = self.step_time("stop")
        if stop is not None and not any(p.msg.time >= stop for p in self.packets):
            out += ["When the script stopped the nodes afterwards, they sent nothing more: a "
                    "node that stops has no connection to close, and the DHT needs no "
                    "goodbye (the others will find out at their next request).", ""]
        return out

    def prose_other(self):
        return [
            "Datagrams that belong to none of the steps above: the periodic work of the DHT "
            "(bucket refreshes, own-ID lookups while the table holds fewer than k = 20 "
            "contacts, address PINGs; dht.md, section 11).",
            "",
        ]
