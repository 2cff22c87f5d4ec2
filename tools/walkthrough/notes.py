"""Why each packet of walkthrough.md was sent: a few sentences for a packet shown in full, a
few words for one listed in a line. A mixin of render.Document."""

import hashlib
import struct

CHUNK_SIZE = 262144  # content.md, section 3: files of up to 2 GiB


def u32(b, at):
    """The big-endian u32 at `at`."""
    return struct.unpack(">I", b[at:at + 4])[0]


def leading_zero_bits(a, b):
    x = int(a, 16) ^ int(b, 16)
    return 256 - x.bit_length()


def read_addr(b, at):
    """("ip:port", next offset) of an address (overview.md, section 4)."""
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


class Notes:
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

    def who_id(self, node_id):
        return self.by_id.get(node_id, f"`{node_id[:8]}…`")

    def carried(self, rec):
        """What a record's plaintext is: whole frames, or parts of them."""
        at, size = rec.msg.info["plain"]
        end, parts = at + size, []
        for f in self.frames_in(rec):
            fo, fn = f.msg.info["plain"]
            fe, r = fo + fn, f"{self.ref(f)} ({f.name})"
            if fo >= at and fe <= end:
                parts.append(r)
            elif fo >= at:
                parts.append(f"the first {end - fo} bytes of {r}")
            elif fe <= end:
                parts.append(f"the last {fe - at} bytes of {r}")
            else:
                parts.append(f"{size} bytes from the middle of {r}")
        return ", ".join(parts) if parts else "nothing"

    def provider_answer(self):
        """The last PROVIDERS C received before the connection that names B with its ID."""
        first_tcp = next((p.n for p in self.packets if p.msg.kind != "dht"), None)
        b = self.nodes["B"].node_id
        ps = [p for p in self.packets[:first_tcp] if p.name == "PROVIDERS" and p.dst == "C"
              and b in p.values("provider_id")]
        return ps[-1] if ps else None

    def proves_after(self, p):
        """The PROVE that the packet made its receiver send to its sender, if any."""
        return next((q for q in self.packets[p.n:] if q.name == "PROVE"
                     and self.prove_reason(q)[1] is p), None)

    def _note(self, p):
        """Why the packet was sent: (a few sentences, a few words)."""
        kind = p.msg.kind
        if kind == "dht":
            return self.dht_note(p)
        if kind == "noise":
            return self.noise_note(p)
        if kind == "record":
            return self.record_note(p)
        note, short = self.frame_note(p)
        if note and p.name not in ("HANDSHAKE", "PIECE"):
            recs = self.records_of(p)
            which = ", ".join(f"{r.msg.info['number']} ({self.ref(r)})" for r in recs)
            s = "s" if len(recs) > 1 else ""
            note += f" It came in {p.src}'s record{s} {which}."
        return note, short

    # ----- the DHT -----------------------------------------------------------------------------

    def dht_note(self, p):
        x, y = p.src, p.dst
        ans = f" Answered by {self.ref(p.answer)}." if p.answer else ""
        ans_s = f"; answered by {self.ref(p.answer)}" if p.answer else ""
        re = self.ref(p.answers) if p.answers else None
        v = self.variant(p)
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
            prove = self.proves_after(p)
            if prove:
                then = (f"{x} answered a request of {y}'s, so {y} will take it into its "
                        f"routing table, but only once {x} has proven its key "
                        f"({self.ref(prove)}).")
            else:
                then = f"{x} is in {y}'s routing table already: the answer only refreshes it."
            return (f"Answers {re}, with the same txid. `observed` is where the PING came "
                    f"from as {x} saw it; on loopback there is no NAT, so it is {y}'s own "
                    f"address. {then}",
                    f"answers {re}")
        if p.name == "PROVE":
            reason, last = self.prove_reason(p)
            if reason == "request":
                why = (f"{y}'s {last.name} ({self.ref(last)}) was a request in the name of an "
                       f"ID {x} did not know. {x} answers it, but {y} may enter {x}'s routing "
                       f"table only once it has proven that it holds the private key of that "
                       f"ID (dht.md, section 6, rule 3, and section 6.1).")
            else:
                why = (f"{y} answered {x} ({self.ref(last)}), so it may enter {x}'s routing "
                       f"table, but only once it has proven that it holds the private key of "
                       f"its ID (dht.md, section 6, rule 4, and section 6.1).")
            return (f"{why} Anyone can write any ID in a datagram's header; only the holder "
                    f"of its key can answer this challenge: a fresh random `nonce`, and the "
                    f"address {x} sent the PROVE to, for {y} to sign.{ans}",
                    f"{x} asks {y} to prove its node ID{ans_s}")
        if p.name == "PROOF":
            key = p.field("public_key")
            ok = hashlib.sha256(bytes.fromhex(key)).hexdigest() == p.sender
            hashes = "whose SHA-256 is" if ok else "whose SHA-256 is NOT"
            return (f"Answers {re}. `public_key` is {x}'s Ed25519 identity key, {hashes} "
                    f"{x}'s node ID, the `sender_id` above. The `signature` covers "
                    f"\"peershare-dht-proof:\", the PROVE's nonce, {x}'s ID, {y}'s ID and the "
                    f"address {y} sent the PROVE to: it answers that PROVE only, proves nothing "
                    f"to another node, cannot be carried to another address, and is no use "
                    f"recorded (the next PROVE brings another nonce). {y} checks all of it "
                    f"and only then takes {x} into its routing table. A proven ID and "
                    f"address stay proven: the traffic that follows carries no signatures.",
                    f"answers {re}: {x}'s key and signature")
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
            names = ", ".join(self.who_id(c) + f" (`{a}`)" for c, a in contacts)
            short = ", ".join(self.who_id(c) for c, _ in contacts)
            return (f"Answers {re}: the contacts {x} knows closest to the target, closest "
                    f"first, never {y} itself: {names}. They are only candidates for {y}: "
                    f"{y} asks them at once, but takes them into its routing table only once "
                    f"they have answered it themselves and proven their keys.",
                    f"answers {re}: {short}")
        if p.name == "GET_PROVIDERS":
            ids = (" Its flags set PROVIDER_IDS: \"I read provider node IDs\", so the answer "
                   "names the node ID of each provider too (dht.md, section 4.6)."
                   if p.flags & 0x04 else "")
            if p.section == "announce":
                return (f"Step 1 of the announce: {x} asks {y} who provides the content "
                        f"ID and, above all, for a token to announce it there later.{ans}",
                        f"{x}'s announce, step 1{ans_s}")
            if p.section == "have":
                return (f"C now holds a verified chunk, so it provides the content too. "
                        f"Like B in section 2, it first looks up the content ID to collect "
                        f"tokens from the closest nodes.{ans}",
                        f"C's announce, step 1{ans_s}")
            return (f"{x} asks {y} who provides the content ID (the `key`).{ids}{ans}",
                    f"{x} asks who provides the content{ans_s}")
        if p.name == "PROVIDERS":
            return self.providers_note(p, re)
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
            return (f"Answers {re}: {x} stores the record ({y}'s IP address and port, and "
                    f"the node ID {y} announced in, under the content ID) for 2 hours, "
                    f"unless {y} republishes it (every 30 minutes).",
                    f"answers {re}: {x} stores the record")
        return "", ""

    def providers_note(self, p, re):
        x, y = p.src, p.dst
        b = p.body
        token = b[:16].hex()
        n, at, provs = b[16], 17, []
        for _ in range(n):
            a, at = read_addr(b, at)
            provs.append(a)
        contacts, _ = read_contacts(b, at)
        ids = p.values("provider_id")
        parts = [f"Answers {re}. The token `{token[:8]}…` is good for {y}'s address only, "
                 f"for 5 to 10 minutes."]
        short = []
        if provs:
            ps = []
            for i, a in enumerate(provs):
                who = f" with the node ID of {self.who_id(ids[i])}" if i < len(ids) else ""
                if a.startswith("0.0.0.0"):
                    ps.append(f"`{a}`, that is {x} itself: \"me, at the address this "
                              f"datagram comes from\" (dht.md, section 4.6){who}")
                    short.append(f"{x} itself")
                else:
                    ps.append(f"{self.who_addr(a)}, a record {x} stores{who}")
                    short.append(self.who_addr(a))
            parts.append("Providers: " + "; ".join(ps) + ".")
            if ids:
                parts.append(f"The IDs come last, in `provider_ids`, because {y} asked for "
                             f"them (flag PROVIDER_IDS): a downloader that dials a provider "
                             f"expects that ID in the secure handshake and hangs up on any "
                             f"other, so a lying answer can make it hang up, never talk to "
                             f"an impostor.")
        else:
            parts.append("No providers yet.")
        if contacts:
            cs = ", ".join(self.who_id(c) for c, _ in contacts)
            parts.append(f"Closer contacts, for the lookup to go on: {cs}.")
        prov = "providers: " + ", ".join(short) if short else "no providers"
        return " ".join(parts), f"answers {re}: a token, {prov}"

    # ----- the secure session ------------------------------------------------------------------

    def noise_note(self, p):
        x, y = p.src, p.dst
        prov = self.provider_answer()
        if p.name == "msg1":
            return (f"{x}'s first bytes on the new connection, before any frame: the first "
                    f"message of the Noise XX handshake (secure.md, section 2), behind a "
                    f"2-byte length. `e` is an ephemeral X25519 public key {x} made for this "
                    f"session alone and forgets after it; the HELLO says, in clear, which "
                    f"protocol and version {x} speaks, so that a node of another version "
                    f"stops here instead of misreading what follows. Nothing in msg1 is "
                    f"secret or signed. Both sides also mix the prologue \"PeerShare PSWP 3\" "
                    f"into their handshake hash (it is never sent): if anyone changed a byte "
                    f"of msg1 on the way, the two hashes differ and msg2 fails to open. The "
                    f"key log names the session by this `e`.",
                    f"{x} starts the handshake")
        if p.name == "msg2":
            return (f"{x}'s answer. `e` is {x}'s own ephemeral key, in clear; from the two "
                    f"ephemeral keys both sides now compute the same secret (`ee`), which "
                    f"nobody else can: everything after this field is encrypted. `s` is "
                    f"{x}'s Noise static key (32 bytes, and a 16-byte tag). Then `es` mixes "
                    f"in a second secret, from {y}'s ephemeral key and {x}'s static key, under "
                    f"which comes the identity proof (98 bytes and a tag): its version, its "
                    f"flags (whether {x} offers AES-256-GCM for the records), {x}'s "
                    f"Ed25519 identity key, and that key's signature of the static key. Only "
                    f"the holder of the static key's secret can compute `es`, and only the "
                    f"holder of the identity key can sign. {y} checks both, computes the "
                    f"node ID as the SHA-256 of the identity key, and compares it with the ID "
                    f"the DHT gave for this address ({self.ref(prov)}): on any other ID it "
                    f"would hang up before sending a single frame.",
                    f"{x} answers, and proves its node ID")
        return (f"The last handshake message: {x}'s static key (`s`) and identity proof, "
                f"encrypted; `se`, a secret from {x}'s static key and {y}'s ephemeral key, "
                f"proves {x} holds that key's secret, as `es` did for {y}. {y} now knows {x}'s "
                f"node ID for certain. Both sides split the handshake's final key material "
                f"into two keys, one per direction, and the handshake is over: from here on "
                f"each side sends only records.",
                f"{x} proves its node ID")

    def record_note(self, p):
        x, y = p.src, p.dst
        num = p.msg.info["number"]
        at, size = p.msg.info["plain"]
        what = self.carried(p)
        if num == 0:
            return (f"{x}'s first record. Only its 2-byte length is in clear; the {size} "
                    f"bytes of ciphertext are as many as the plaintext, and the 16-byte tag "
                    f"authenticates them. Opened with the key log's {x} → {y} key and nonce "
                    f"0, the record's number, they are {what}. An eavesdropper without the "
                    f"key log learns the record's length and when it went, nothing more.",
                    f"carries {what}")
        if self.continues(p):
            return (f"Record {num} of {x} → {y} carries {what}: frames and records are cut "
                    f"independently (secure.md, section 3). A record carries at most 65519 "
                    f"bytes of plaintext, so a long frame takes several records, and the "
                    f"receiver reads the frame only when all of them have opened.",
                    f"carries {what}")
        return "", f"carries {what}"

    # ----- wire frames ---------------------------------------------------------------------------

    def frame_note(self, p):
        x, y = p.src, p.dst
        v = self.variant(p)
        sent_before = [q for q in self.packets[:p.n - 1] if q.msg.kind == "wire"]
        recs = self.records_of(p)
        if p.name == "HANDSHAKE" and v == "connect":
            port = struct.unpack(">H", p.body[70:72])[0]
            return (f"{x}'s first frame, read from its record 0 ({self.ref(recs[0])}): who "
                    f"it is (`node_id`), which content the connection is about "
                    f"(`content_id`) and the port it accepts connections on ({port}; the same "
                    f"port as its DHT). `node_id` must be the ID {x}'s identity proof proved in "
                    f"msg3: {y} closes a connection whose HANDSHAKE frame names another "
                    f"(secure.md, section 3), so the node IDs wire.md works with (duplicate "
                    f"connections, bans) are proven ones. The frame's `version` is that of "
                    f"its layout, the same as before the session; the protocol's version was "
                    f"msg1's HELLO.",
                    f"{x} opens the conversation")
        if p.name == "HANDSHAKE":
            prov = self.provider_answer()
            return (f"{x} holds the verified manifest of this content and serves it, so it "
                    f"answers with its own HANDSHAKE, naming the same content ID (otherwise "
                    f"it would send ERROR UNKNOWN_CONTENT and close). Its `node_id` is the ID "
                    f"msg2 proved, which is the ID the DHT named for this provider "
                    f"({self.ref(prov)}).",
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
            refs = ", ".join(self.ref(r) for r in recs)
            return (f"Chunk {chunk}, {size} bytes, answering {self.ref(req)}. It came in "
                    f"{len(recs)} records ({refs}): the first holds only the frame's length, "
                    f"type and chunk index, the rest the chunk, at most 65519 bytes each. {y} "
                    f"checks that its SHA-256 is chunk {chunk}'s hash in the manifest before "
                    f"it counts, is stored, or is served to anyone: here `{digest[:16]}…`, as "
                    f"in [the manifest](#the-manifest).",
                    f"chunk {chunk}, answering {self.ref(req)}, in {len(recs)} records")
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
