#!/usr/bin/python3
"""libtorrent-rasterbar anchor for tools/bench/bench.py: M seeders -> N leechers on 127.0.0.1,
no tracker, no DHT: every leecher is connected directly to every seeder and to every other
leecher (a swarm). TCP only (uTP off: on loopback uTP is much slower and would flatter us), the
seeders in seed_mode (no re-check of the file they were built from). Nothing is rate limited,
unless --seed-upload-limit: then each seeder's session gets that `upload_rate_limit` and its
local peer class the same `upload_limit` (loopback peers are in the local peer class, which
the session-wide limits skip); otherwise the local peer class is left unlimited. Runs under
Debian's /usr/bin/python3, which has python3-libtorrent.

FILE may be a directory: `add_files` on a directory makes a multi-file torrent of every file
under it (named after the directory; each leecher rebuilds the tree under its own folder).
`--torrent` picks the format: `hybrid`, libtorrent 2.0's default (v1 + v2 metadata: it pads
every file to a piece boundary, so a pack of small files becomes one piece per file) or
`v1` (`create_torrent.v1_only`: no padding, pieces span files, as classic v1 tools make).
`--leechers 0` only builds the torrent (hash_s), for the time of hashing a tree.

usage: lt_anchor.py FILE|DIR WORKDIR [--leechers N] [--seeders M] [--seed-upload-limit BYTES_PER_S]
                    [--piece-kib K] [--settings default|hp] [--torrent hybrid|v1] [--timeout S]
Prints one JSON object on stdout: version, hash_s (create_torrent + set_piece_hashes),
times (seconds from the first connect_peer to is_seeding, per leecher; null if not done),
files (each leecher's output path: the file, or the directory), seed_upload (each seeder's
total_payload_upload in bytes, read once every leecher is done), torrent (format, files in the
torrent counting pad files, pad files, pieces). WORKDIR is created and must be removed by the
caller.
"""
import argparse
import json
import os
import time

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("work")
    ap.add_argument("--leechers", type=int, default=1)
    ap.add_argument("--seeders", type=int, default=1)
    ap.add_argument("--seed-upload-limit", type=int, default=0,
                    help="bytes/s each seeder may upload (session and local peer class); 0: unlimited")
    ap.add_argument("--piece-kib", type=int, default=1024)
    ap.add_argument("--settings", choices=["default", "hp"], default="default")
    ap.add_argument("--torrent", choices=["hybrid", "v1"], default="hybrid",
                    help="torrent format: hybrid (v1+v2, libtorrent 2.0's default) or v1 only")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    src = os.path.abspath(a.file.rstrip("/") or "/")
    os.makedirs(a.work, exist_ok=True)

    t = time.perf_counter()
    fs = lt.file_storage()
    lt.add_files(fs, src)
    ct = lt.create_torrent(fs, a.piece_kib * 1024,
                           lt.create_torrent.v1_only if a.torrent == "v1" else 0)
    lt.set_piece_hashes(ct, os.path.dirname(src))
    ti = lt.torrent_info(ct.generate())
    hash_s = time.perf_counter() - t
    files = ti.files()
    torrent = {"format": a.torrent, "files": files.num_files(), "pieces": ti.num_pieces(),
               "pad_files": sum(1 for i in range(files.num_files())
                                if files.file_flags(i) & lt.file_storage.flag_pad_file)}
    if a.leechers == 0:
        print(json.dumps({"version": lt.__version__, "hash_s": hash_s, "torrent": torrent}), flush=True)
        return

    base = lt.high_performance_seed() if a.settings == "hp" else {}

    def session(upload_limit=0):
        s = dict(base)
        s.update({
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
            "allow_multiple_connections_per_ip": True, "alert_mask": 0,
            "enable_outgoing_utp": False, "enable_incoming_utp": False,
        })
        if upload_limit:
            s["upload_rate_limit"] = upload_limit
        ses = lt.session(s)
        # Loopback peers are in the local peer class, which the session's rate limits skip: it
        # gets the same upload limit, or none.
        ses.set_peer_class(lt.session.local_peer_class_id,
                           {"upload_limit": upload_limit, "download_limit": 0, "label": "local"})
        return ses

    seeds = []
    for _ in range(a.seeders):
        s = session(a.seed_upload_limit)
        h = s.add_torrent({"ti": ti, "save_path": os.path.dirname(src),
                           "flags": lt.torrent_flags.seed_mode})
        seeds.append((s, h))
    leech = []
    for i in range(a.leechers):
        s = session()
        d = os.path.join(a.work, f"l{i}")
        os.makedirs(d, exist_ok=True)
        h = s.add_torrent({"ti": ti, "save_path": d})
        leech.append((s, h, d))
    # Wait until every leecher has finished checking its (empty) save path.
    deadline = time.time() + 30
    while time.time() < deadline and any(
            h.status().state not in (lt.torrent_status.downloading,) for _, h, _ in leech):
        time.sleep(0.01)
    ports = [s.listen_port() for s, _, _ in leech]
    seed_ports = [s.listen_port() for s, _ in seeds]

    t0 = time.perf_counter()
    for i, (s, h, _) in enumerate(leech):
        for p in seed_ports:
            h.connect_peer(("127.0.0.1", p))
        for j, p in enumerate(ports):
            if j != i:
                h.connect_peer(("127.0.0.1", p))
    done = [None] * a.leechers
    while None in done and time.perf_counter() - t0 < a.timeout:
        for i, (_, h, _) in enumerate(leech):
            if done[i] is None and h.status().is_seeding:
                done[i] = time.perf_counter() - t0
        time.sleep(0.005)
    name = os.path.basename(src)
    print(json.dumps({
        "version": lt.__version__, "hash_s": hash_s, "times": done,
        "files": [os.path.join(d, name) for _, _, d in leech],
        "settings": a.settings, "piece_kib": a.piece_kib, "torrent": torrent,
        "seed_upload": [h.status().total_payload_upload for _, h in seeds],
    }), flush=True)
    # Skip the sessions' slow, orderly teardown; the written pages are the kernel's already.
    os._exit(0)


if __name__ == "__main__":
    main()
