#!/usr/bin/env python3
"""Writes protocol-spec/walkthrough.md and protocol-spec/walkthrough.bytes from a real capture.

    tools/walkthrough/generate.py [--bin PATH] [--base-port 4001] [--keep DIR]
    tools/walkthrough/generate.py --from DIR      # again from a kept capture (no root needed)

It runs three real nodes on loopback (A, the first node; B, the seeder, and C, the downloader,
both joining through A), all with PEERSHARE_KEYLOG set so that their wire sessions can be
opened, captures the session on `lo` with dumpcap (root, or the right to capture), has B share
a fixed 300000-byte file, C look it up and download it, stops the nodes, and reads the capture
back: every DHT datagram here, and the TCP connection with `peershare decode --pcap --keylog
--json`, which cuts it into the secure session's handshake messages and records and opens the
records into wire frames. Each datagram and frame is explained by `peershare decode --json`,
and the whole is written out:

- walkthrough.md: the guided tour, every message with its hex dump and the decoder's table;
- walkthrough.bytes: every message's exact bytes, one per line, and the session's key log
  line, for tests/walkthrough.rs, which decodes them again with the current decoder and fails
  when the page no longer says what the decoder says (then: `make walkthrough`).

Python 3 standard library only. `make walkthrough` runs it with the release binary.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import capture  # noqa: E402
import formats  # noqa: E402
import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def decode(binary, kind, data):
    """`peershare decode --json --as KIND -` on the bytes: the explanation as JSON."""
    out = subprocess.run([str(binary), "decode", "--json", "--as", kind, "-"], input=data,
                         capture_output=True)
    if out.returncode not in (0, 1):
        raise SystemExit(f"peershare decode failed: {out.stderr.decode(errors='replace')}")
    ex = json.loads(out.stdout)
    if not ex["valid"] or not ex["layout_agrees"]:
        raise SystemExit(f"a captured {kind} message does not decode: {data.hex()}\n"
                         + json.dumps(ex.get("error"), indent=1))
    return ex


def decode_pcap(binary, pcap, keylog):
    """`peershare decode --pcap --keylog --json`: the capture's TCP sessions explained."""
    out = subprocess.run([str(binary), "decode", "--pcap", str(pcap), "--keylog", str(keylog),
                          "--json"], capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"peershare decode --pcap failed: {out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout)


def read_session(binary, session):
    """The session's messages in capture order, the TCP events, and the TCP sessions with
    their key log lines. Raises capture.SessionError when the capture cannot be read whole."""
    ports = {n.port for n in session.nodes.values()}
    messages, events, times, streams = capture.extract(session.pcap, ports)
    report = decode_pcap(binary, session.pcap, session.keylog)
    messages += capture.session_messages(report, times, streams)
    messages.sort(key=lambda m: (m.index, m.pos))
    lines = {}
    for line in session.keylog.read_text().splitlines():
        w = line.split()
        if len(w) == 5 and w[0] == "PSWP3":
            lines[w[1]] = line
    sessions = []
    for s in report["sessions"]:
        if s["ephemeral"] not in lines:
            raise capture.SessionError(f"no key log line for session {s['ephemeral']}")
        ends = {capture.endpoint(s["initiator"]), capture.endpoint(s["responder"])}
        connect = [e for e in events if e.what == "connect" and {e.src, e.dst} == ends]
        if [e.conn for e in connect] != [s["connection"]]:
            raise capture.SessionError(f"TCP connection {s['connection']}: its SYN is not "
                                       f"in the capture")
        sessions.append({"conn": s["connection"], "initiator": s["initiator"],
                         "responder": s["responder"], "keylog": lines[s["ephemeral"]]})
    return messages, events, sessions


def explain(binary, m):
    """What the page shows of a message: the decoder's explanation of a datagram or a frame;
    for a handshake message or a record, the capture decoder's word on it (formats.py)."""
    if m.kind == "noise":
        return {"messages": [formats.noise_explanation(m.info)]}
    if m.kind == "record":
        return {"messages": [formats.record_explanation(m.info, m.data)]}
    return decode(binary, m.kind, m.data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="the peershare binary (default: cargo build --release)")
    ap.add_argument("--base-port", type=int, default=4001,
                    help="ports of A, B and C: this one and the next two (default 4001)")
    ap.add_argument("--out", default=str(ROOT / "protocol-spec"),
                    help="where walkthrough.md and walkthrough.bytes go")
    ap.add_argument("--keep", help="keep the capture, the key log, the session and the node "
                                   "logs in this directory")
    ap.add_argument("--from", dest="source",
                    help="no new session: regenerate from a directory written by --keep")
    args = ap.parse_args()

    if not args.source:
        try:
            capture.check_capture_rights()  # before a long build
        except capture.FatalError as e:
            raise SystemExit(f"walkthrough: {e}")
    binary = Path(args.bin).resolve() if args.bin else capture.build_release(ROOT)
    if not binary.exists():
        raise SystemExit(f"{binary}: no such binary")

    if args.source:
        src = Path(args.source)
        session = capture.Session.from_json(json.loads((src / "session.json").read_text()),
                                            src / "session.pcap")
        try:
            messages, events, sessions = read_session(binary, session)
        except capture.SessionError as e:
            raise SystemExit(f"walkthrough: {e}")
    else:
        session = None
        for attempt in range(1, 4):
            work = Path(tempfile.mkdtemp(prefix="peershare-walkthrough-"))
            print(f"session {attempt} (in {work}):")
            try:
                session = capture.run_session(binary, work, args.base_port)
                # A capture that lost packets cannot be read whole: run the session again.
                messages, events, sessions = read_session(binary, session)
            except capture.FatalError as e:
                raise SystemExit(f"walkthrough: {e}")
            except capture.SessionError as e:
                print(f"  failed: {e} (node logs in {work})", file=sys.stderr)
                session = None
                continue
            break
        if session is None:
            raise SystemExit("walkthrough: no complete session in 3 attempts")
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for f in work.glob("*.log"):
                shutil.copy(f, keep / f.name)
            shutil.copy(session.pcap, keep / "session.pcap")
            (keep / "session.json").write_text(json.dumps(session.to_json(), indent=1))
            shutil.rmtree(work, ignore_errors=True)
            session.pcap = keep / "session.pcap"

    explained = [explain(binary, m) for m in messages]
    manifest = render.assemble_manifest(messages)
    manifest_ex = decode(binary, "manifest", manifest) if manifest else None
    if manifest and hashlib.sha256(manifest).hexdigest() != session.content_id:
        raise SystemExit("the captured manifest does not hash to the content ID")

    out = Path(args.out)
    doc = render.Document(session, messages, events, explained, manifest, manifest_ex,
                          capture.file_content(), sessions)
    (out / "walkthrough.bytes").write_text(doc.bytes_file())
    (out / "walkthrough.md").write_text(doc.markdown())
    if not args.source and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out / 'walkthrough.md'} and {out / 'walkthrough.bytes'}: "
          f"{len(messages)} messages, {len(doc.full)} shown in full")


if __name__ == "__main__":
    os.umask(0o022)
    main()
