"""The library-scale benchmark of issue 21, run through tools/bench/bench.py:

  python3 tools/bench/bench.py library-scale [--files 100000] [--window 100]

One real node on loopback; FILES small files (1 byte to 1 KiB of random bytes each, every one
distinct, made once in WORK_DIR/inputs/library-<files>/ and reused) are shared one after the
other through ONE kept-open API connection (newline-delimited `local_add_file` requests, one
reply line each, as protocol-spec/api.md section 2 allows). Printed:

- the time per add (request written to reply read), mean over WINDOW adds around the 1st,
  1,000th, 10,000th and 100,000th add (those that FILES reaches), and their ratio to the
  1,000th's (goal: the 100,000th within 2x);
- the total time of all the adds;
- disk written per add: the node's `write_bytes` (/proc/PID/io: bytes it caused to be sent
  to the block layer) over the adds, divided by their count;
- the node's RSS (VmRSS) with every file shared (goal <= 100 MiB at 100,000);
- the node's CPU time over IDLE_SECS seconds idle after the adds (the status view and the
  housekeeping must not grow with the library);
- start-up with the library: the node is stopped and started again on the same data dir, and
  the time from the start of the process until `all_available_content` lists every share
  (goal < 2 s at 100,000), then its RSS again.
"""
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import time

import bench as B

SCENARIOS = ("library-scale",)
MARKS = (1, 1000, 10000, 100000)
# How long the node is left idle after the adds to measure its CPU.
IDLE_SECS = 10


def make_inputs(work_dir, files):
    """FILES distinct small files, 1,000 per folder; made once and reused."""
    root = os.path.join(work_dir, "inputs", f"library-{files}")
    done = os.path.join(root, ".complete")
    paths = [os.path.join(root, f"d{i // 1000:04d}", f"f{i:06d}.bin") for i in range(files)]
    if os.path.exists(done):
        return paths
    shutil.rmtree(root, ignore_errors=True)
    rnd = random.Random(21)
    for i, p in enumerate(paths):
        if i % 1000 == 0:
            os.makedirs(os.path.dirname(p))
        with open(p, "wb") as f:
            # The index makes every file distinct: no two adds share a content ID.
            f.write(i.to_bytes(4, "big") + rnd.randbytes(rnd.randint(0, 1020)))
    open(done, "w").close()
    return paths


def write_bytes(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


class Conn:
    """One kept-open API connection: a request per line, a reply per line."""

    def __init__(self, api):
        self.s = socket.create_connection(api, timeout=600)
        self.buf = b""

    def call(self, kind, payload):
        self.s.sendall(json.dumps({"type": kind, "payload": payload}).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit("the node closed the API connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.s.close()


def window(times, mark, w):
    """Mean time per add (ms) of the W adds around add number MARK (1-based)."""
    n = len(times)
    if mark > n:
        return None
    lo = max(0, min(mark - 1 - w // 2, n - w))
    xs = times[lo:lo + w]
    return 1000 * statistics.mean(xs)


def listed(node, timeout=600):
    r = node.call("local_request_content_info", {"content_hash": "all_available_content"}, timeout)
    return len(r.get("available_content", []))


def bench_library(a):
    B.print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    print(f"library-scale: {a.files} small files (1 B - 1 KiB) shared one by one through one kept-open "
          f"API connection, then a restart", flush=True)
    t = time.time()
    paths = make_inputs(a.work_dir, a.files)
    print(f"  inputs ready in {time.time() - t:.1f} s", flush=True)
    work = os.path.join(a.work_dir, "library-run")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    load = B.Load()
    node = B.Node(work, "node", [], log=True)
    try:
        conn = Conn(node.api)
        w0 = write_bytes(node.p.pid)
        times = []
        t_all = time.time()
        for i, p in enumerate(paths):
            t0 = time.perf_counter()
            r = conn.call("local_add_file", {"filepath": p})
            times.append(time.perf_counter() - t0)
            if r.get("status") != "success":
                raise SystemExit(f"add {i + 1} ({p}) failed: {r}")
            if (i + 1) % 10000 == 0:
                print(f"  {i + 1} adds in {time.time() - t_all:.0f} s; last 100: "
                      f"{window(times, i + 1, 100):.2f} ms per add", flush=True)
        total = time.time() - t_all
        written = write_bytes(node.p.pid) - w0
        conn.close()
        rss = B.rss_kib(node.p.pid) / 1024
        n = len(times)
        base = window(times, 1000, a.window)
        print(f"  time per add, mean over {a.window} adds around the n-th:")
        for m in MARKS:
            v = window(times, m, a.window)
            if v is not None:
                rel = f"  ({v / base:.2f}x the 1,000th's)" if base and m != 1000 else ""
                print(f"    n = {m:>6}: {v:7.2f} ms{rel}")
        if n >= 100000 and base:
            v = window(times, 100000, a.window)
            print(f"    goal: the 100,000th within 2x the 1,000th: {'met' if v <= 2 * base else 'NOT met'}")
        print(f"  all {n} adds: {total:.1f} s ({1000 * total / n:.2f} ms per add on average)")
        print(f"  disk written by the node: {written / n / 1024:.1f} KiB per add ({written / 2**20:.0f} MiB in all)")
        print(f"  node RSS with {n} shares: {rss:.1f} MiB" + ("  (goal <= 100 MiB)" if n >= 100000 else ""),
              flush=True)
        # The periodic work (status view, housekeeping) must not grow with the library.
        c0 = B.proc_stat(node.p.pid)
        time.sleep(IDLE_SECS)
        idle = (B.proc_stat(node.p.pid) - c0) / os.sysconf("SC_CLK_TCK")
        print(f"  node CPU while idle with {n} shares: {idle:.2f} s in {IDLE_SECS} s "
              f"({100 * idle / IDLE_SECS:.1f}% of a core)", flush=True)
        node.stop()
        t0 = time.time()
        node = B.Node(work, "node", [], log=True)
        ready = time.time() - t0
        count = listed(node)
        up = time.time() - t0
        rss2 = B.rss_kib(node.p.pid) / 1024
        print(f"  restart with {n} shares: API ready in {ready:.2f} s, all {count} listed after {up:.2f} s"
              + ("  (goal < 2 s)" if n >= 100000 else "") + f"; RSS then {rss2:.1f} MiB", flush=True)
        if count != n:
            print(f"  FAILED: {count} shares listed after the restart, {n} added")
        du = subprocess.run(["du", "-sh", node.dir], capture_output=True, text=True).stdout.split()
        print(f"  data dir: {du[0] if du else '?'}")
        print(f"  {load.report()}", flush=True)
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)


def add_parsers(sub, common):
    """The library-scale subcommand, with bench.py's common options."""
    p = sub.add_parser("library-scale", parents=[common], help="time per add, RSS and start-up at 100,000 shares")
    p.add_argument("--files", type=int, default=100000, help="files shared (default 100000)")
    p.add_argument("--window", type=int, default=100, help="adds averaged around each mark (default 100)")


def run(a):
    bench_library(a)


if __name__ == "__main__":
    raise SystemExit("run through bench.py: python3 tools/bench/bench.py library-scale ...")
