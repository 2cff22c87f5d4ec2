"""The formats of walkthrough.md and walkthrough.bytes that tests/walkthrough.rs reads back.

The test renders the same packet lines, dump rows, table rows, handshake-message and record
explanations from the current decoder and compares them with the page: a change to one of
these must be made in the test too.
"""

import hashlib

DUMP_ROW = 16  # bytes per hex-dump row
ELIDE_OVER = 512  # longer messages show their first and last bytes only
ELIDE_HEAD = 64
ELIDE_TAIL = 32
TAG_LEN = 16  # a record's Poly1305 tag (secure.md, section 3)

# How the packet line names where a message travels.
LABEL = {"dht": "UDP", "noise": "TCP", "record": "TCP", "wire": "decrypted"}

TABLE_HEAD = ["| offset | len | field | value | meaning |", "| ---: | ---: | --- | --- | --- |"]


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
    """Fields as table rows: offset, length, field, value, meaning."""
    rows = []
    for f in fields:
        name = "· " * depth + code(f["name"])
        rows.append(f"| {f['offset']} | {f['length']} | {name} | {code(f['value'])} | "
                    f"{text_cell(f['meaning'])} |")
        rows.extend(table_rows(f.get("children", []), depth + 1))
    return rows


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


def packet_line(src, dst, kind, size, summary):
    """The line under a packet's heading: who to whom, how, its size, its summary."""
    return f"{src} → {dst} ({LABEL[kind]}, {size} bytes): {code(summary)}"


# ----- handshake messages and records, from `peershare decode --pcap --json` -------------------

TOKENS = {"msg1": "-> e", "msg2": "<- e, ee, s, es", "msg3": "-> s, se"}


def noise_explanation(h):
    """A Noise handshake message as the page shows it: the decoder's fields, with offsets from
    the start of the message (the decoder counts them in the sender's byte stream), and a
    summary made of its Noise tokens and clear fields."""
    start = h["fields"][0]["offset"]
    fields = [dict(f, offset=f["offset"] - start) for f in h["fields"]]
    value = {f["name"]: f["value"] for f in h["fields"]}
    name = h["name"]
    summary = f"{name} {TOKENS[name]}"
    if name == "msg1":
        summary += f": e={value['e'][:4]}…, HELLO {value['HELLO']}"
    elif name == "msg2":
        summary += f": e={value['e'][:4]}…, s and identity proof encrypted"
    else:
        summary += ": s and identity proof encrypted"
    return {"name": name, "summary": summary, "notes": [], "fields": fields}


def record_explanation(r, data):
    """A record (secure.md, section 3) as the page shows it: its length, ciphertext and tag,
    from the decoder's record info (its number, and where its plaintext went)."""
    n, (at, size) = r["number"], r["plain"]
    body = len(data) - 2
    sealed = body - TAG_LEN
    shown = data[2:2 + min(8, sealed)].hex() + ("…" if sealed > 8 else "")
    where = (f"bytes {at} to {at + size - 1} of this direction's wire frames" if size
             else "nothing")
    fields = [
        {"offset": 0, "length": 2, "name": "length", "value": str(body),
         "meaning": "bytes that follow, ciphertext and tag (16 to 65535): in clear"},
        {"offset": 2, "length": sealed, "name": "ciphertext", "value": f"{sealed} bytes: {shown}",
         "meaning": f"{where}, encrypted with this direction's key and nonce {n}, the "
                    f"record's number"},
        {"offset": 2 + sealed, "length": TAG_LEN, "name": "tag", "value": data[-TAG_LEN:].hex(),
         "meaning": "Poly1305 tag: the record opens only under that key and nonce, unaltered"},
    ]
    summary = f"record {n}: {size} bytes of frames, encrypted, and a tag"
    return {"name": "RECORD", "summary": summary, "notes": [], "fields": fields}


# ----- walkthrough.bytes ---------------------------------------------------------------------

BYTES_HEADER = [
    "# The captured messages of walkthrough.md, in capture order. `session CONN INITIATOR",
    "# RESPONDER KEYLOG` names a TCP connection and its key log line (secure.md, section 6).",
    "# Then one message a line, `N KIND ...`: `N dht HEX`, one UDP datagram; `N noise CONN",
    "# DIR HEX`, a Noise handshake message with its length; `N record CONN DIR NUMBER HEX`,",
    "# one record as on the wire; `N wire CONN DIR HEX`, one wire frame opened from the",
    "# records. DIR is i (sent by the connection's initiator) or r (by its responder). In",
    "# HEX, `[file:OFFSET:LENGTH]` stands for LENGTH bytes of the shared file from OFFSET (the",
    "# file: walkthrough.md, The cast), and `[sealed:OFFSET:LENGTH]` for a record's bytes:",
    "# its length, then LENGTH bytes of its direction's frames from OFFSET sealed with that",
    "# direction's key and the record's number as nonce. `sha256:` is the SHA-256 of the",
    "# whole captured message, to check that a stand-in gives the exact bytes.",
    "# Generated by tools/walkthrough/generate.py (make walkthrough); do not edit.",
    "# tests/walkthrough.rs decodes every message again and checks walkthrough.md.",
]


def sha_column(data):
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
