"""The many-downloads benchmark of issue 21, run through tools/bench/bench.py:

  python3 tools/bench/bench.py many-downloads [--files 250] [--size 100K] [--repeat 1]

Two real nodes on loopback: A shares FILES files of SIZE random bytes each (`local_add_file`
one by one), B (bootstrapped from A) downloads every one of them by its content ID alone
(`local_request_file` without a peer hint, as EchoChain asks: B finds A through the DHT),
(a) one after the other, then, with a fresh pair of nodes (so that nothing learnt in (a)
helps), (b) all at once: FILES API requests in flight, each on its own connection. Printed
for each: the wall time from the first request to the last reply, the time per download
(median, max), and both nodes' DHT counters over the phase, from `status`: `dht.rate_limited`
(requests the per-source rate limit refused), `dht.timeouts` (requests that got no answer)
and `dht.datagrams_out`,
read after the last reply and again 3 s later (a finished download announces itself).
Then the ratio (b)/(a) against the goal, 1.5, and the machine's load. Every received file is
compared with its input (SHA-256); a wrong or missing one fails the run.
"""
import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import bench as B

SCENARIOS = ("many-downloads",)


def make_files(work, n, size):
    """N files of SIZE random bytes under WORK/inputs-many: [(path, sha256 hex)]."""
    d = os.path.join(work, "inputs")
    os.makedirs(d, exist_ok=True)
    out = []
    for i in range(n):
        p = os.path.join(d, f"sample-{i:04d}.bin")
        data = os.urandom(size)
        with open(p, "wb") as f:
            f.write(data)
        out.append((p, hashlib.sha256(data).hexdigest()))
    return out


def dht_counters(node):
    d = node.call("status", timeout=10).get("dht", {})
    return d.get("rate_limited", 0), d.get("timeouts", 0), d.get("datagrams_out", 0)


def pair(work, name):
    a = B.Node(work, f"{name}-a", [], log=True)
    b = B.Node(work, f"{name}-b", ["--bootstrap", a.listen], log=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        if a.call("status")["routing_table_size"] >= 1 and b.call("status")["routing_table_size"] >= 1:
            break
        time.sleep(0.1)
    return a, b


def phase(work, name, files, concurrent, timeout):
    """One phase on a fresh pair: (results dict) or raises SystemExit on a failure."""
    a, b = pair(work, name)
    try:
        ids = []
        for path, _ in files:
            r = a.call("local_add_file", {"filepath": path}, timeout=timeout)
            if r.get("status") != "success":
                raise SystemExit(f"many-downloads: local_add_file {path} failed: {r}")
            ids.append(r["file_hash"])
        # Let the adds' announces and the limiter's buckets settle before measuring.
        time.sleep(3)
        before = [dht_counters(a), dht_counters(b)]
        out = os.path.join(work, f"{name}-out")
        os.makedirs(out)

        def one(cid):
            t = time.perf_counter()
            try:
                r = b.call("local_request_file", {"content_hash": cid, "output_dir": out}, timeout=timeout)
            except (OSError, ValueError) as e:
                r = {"status": "error", "message": f"no reply: {e.__class__.__name__}: {e}"}
            return time.perf_counter() - t, r

        load0 = B.loadavg()
        t0 = time.perf_counter()
        if concurrent:
            with ThreadPoolExecutor(len(ids)) as ex:
                done = list(ex.map(one, ids))
        else:
            done = [one(cid) for cid in ids]
        wall = time.perf_counter() - t0
        at_end = [dht_counters(a), dht_counters(b)]
        time.sleep(3)
        later = [dht_counters(a), dht_counters(b)]
        errors = []
        for (path, sha), (_, r) in zip(files, done):
            if r.get("status") != "success":
                errors.append(f"{os.path.basename(path)}: {r.get('message', r)}")
                continue
            got = r.get("file_path") or os.path.join(out, r.get("filename", ""))
            try:
                with open(got, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != sha:
                        errors.append(f"{got} differs from {path}")
            except OSError as e:
                errors.append(f"{got}: {e}")
        if errors:
            raise SystemExit(f"many-downloads ({name}): FAILED, {len(errors)} of {len(files)}: "
                             + "; ".join(errors[:5]))
        delta = lambda now: [tuple(x - y for x, y in zip(n, o)) for n, o in zip(now, before)]
        return {"wall": wall, "times": [t for t, _ in done], "end": delta(at_end),
                "later": delta(later), "load": load0}
    finally:
        a.stop()
        b.stop()


def counters(res):
    (al, at, ad), (bl, bt, bd) = res["end"]
    (al2, at2, ad2), (bl2, bt2, bd2) = res["later"]
    return (f"rate-limited A {al} B {bl}, timeouts A {at} B {bt}, datagrams sent A {ad} B {bd} "
            f"(3 s later: rate-limited A {al2} B {bl2}, timeouts A {at2} B {bt2}, "
            f"datagrams sent A {ad2} B {bd2})")


def bench_many(a):
    work = tempfile.mkdtemp(prefix="ps-bench-many-", dir=a.work_dir if os.path.isdir(a.work_dir) else None)
    try:
        files = make_files(work, a.files, a.size)
        timeout = a.timeout or 120
        print(f"many downloads: {a.files} files of {a.size} B, node A shares them, node B downloads "
              f"each by ID (no peer hint: providers from the DHT), two nodes on loopback", flush=True)
        seq_walls, con_walls = [], []
        for rnd in range(a.repeat):
            seq = phase(work, f"seq{rnd}", files, False, timeout)
            con = phase(work, f"con{rnd}", files, True, timeout)
            seq_walls.append(seq["wall"])
            con_walls.append(con["wall"])
            st, ct = seq["times"], con["times"]
            print(f"  round {rnd + 1}: (a) one after the other: {seq['wall']:.2f} s "
                  f"(per download median {statistics.median(st) * 1000:.1f} ms, max {max(st) * 1000:.0f} ms; "
                  f"load {seq['load']})", flush=True)
            print(f"    DHT over (a): {counters(seq)}")
            print(f"  round {rnd + 1}: (b) all {a.files} at once: {con['wall']:.2f} s "
                  f"(per download median {statistics.median(ct):.2f} s, max {max(ct):.2f} s; "
                  f"load {con['load']})", flush=True)
            print(f"    DHT over (b): {counters(con)}")
            print(f"    ratio (b)/(a): {con['wall'] / seq['wall']:.2f} [goal <= 1.5: "
                  f"{'met' if con['wall'] <= 1.5 * seq['wall'] else 'NOT met'}]", flush=True)
        if a.repeat > 1:
            s, c = statistics.median(seq_walls), statistics.median(con_walls)
            print(f"  median of {a.repeat} rounds: (a) {s:.2f} s, (b) {c:.2f} s, ratio {c / s:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_parsers(sub, common):
    """The subcommand, with bench.py's common options (COMMON)."""
    m = sub.add_parser("many-downloads", parents=[common],
                       help="2 nodes: N small files one after the other, then all at once")
    m.add_argument("--files", type=int, default=250, help="files (default 250)")
    m.add_argument("--size", type=B.parse_size, default=100 * 1024, help="bytes per file (default 100K)")


def run(a):
    bench_many(a)


if __name__ == "__main__":
    raise SystemExit("run through bench.py: python3 tools/bench/bench.py many-downloads ...")
