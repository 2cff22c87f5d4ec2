#!/usr/bin/env python3
"""PeerShare benchmarks: figures, not pass/fail. Real processes on loopback, driven through
their real local API.

  python3 tools/bench/bench.py dht   [--nodes 50] [--latency 25ms] [--loss 0%] [--lookups 200]
  python3 tools/bench/bench.py idle  [--nodes 200] [--settle 20] [--window 30]
  python3 tools/bench/bench.py all

dht:  lookup latency (median, p99) of `local_request_content_info` when every node adds the
      given one-way delay to each DHT datagram it sends (`peershare run --emulate-latency`),
      since this kernel has no netem.
idle: resident memory and CPU of idle nodes, all running together on this machine.
"""
import argparse, json, os, random, shutil, socket, statistics, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PEERSHARE_BIN", os.path.join(ROOT, "target", "release", "peershare"))


class Node:
    def __init__(self, work, name, args):
        self.dir = os.path.join(work, name)
        cmd = [BIN, "run", "--data-dir", self.dir, "--bind", "127.0.0.1", "--port", "0",
               "--api-port", "0", "-q"] + args
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        info = {}
        for line in self.p.stdout:
            line = line.strip()
            if line == "ready":
                break
            if ": " in line:
                k, v = line.split(": ", 1)
                info[k] = v.split(" ")[0]
        if "api" not in info:
            raise SystemExit(f"node {name} did not start")
        self.listen = info["listen"]
        host, port = info["api"].rsplit(":", 1)
        self.api = (host, int(port))

    def call(self, kind, payload=None, timeout=60):
        with socket.create_connection(self.api, timeout=timeout) as s:
            s.sendall(json.dumps({"type": kind, "payload": payload or {}}).encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()


def network(work, n, extra, parallel=8):
    first = Node(work, "n0", extra)
    with ThreadPoolExecutor(parallel) as ex:
        rest = list(ex.map(lambda i: Node(work, f"n{i}", extra + ["--bootstrap", first.listen]), range(1, n)))
    return [first] + rest


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def bench_dht(a):
    work = tempfile.mkdtemp(prefix="ps-bench-dht-")
    extra = ["--emulate-latency", a.latency, "--emulate-loss", a.loss]
    nodes = []
    try:
        t0 = time.time()
        nodes = network(work, a.nodes, extra)
        # Let bootstrap lookups and the first bucket refreshes settle.
        deadline = time.time() + 60
        while time.time() < deadline:
            sizes = [n.call("status")["routing_table_size"] for n in nodes]
            if min(sizes) >= min(20, a.nodes - 1):
                break
            time.sleep(1)
        time.sleep(a.settle)
        rnd = random.Random(a.seed)
        keys = []
        for i in range(a.keys):
            k = "%064x" % rnd.getrandbits(256)
            owner = rnd.choice(nodes)
            r = owner.call("local_announce_content", {"content_hash": k})
            if r.get("status") != "success":
                raise SystemExit(f"announce failed: {r}")
            keys.append((k, owner.listen))
        lat, ok = [], 0
        def one(_):
            k, owner = rnd.choice(keys)
            asker = rnd.choice(nodes)
            t = time.perf_counter()
            r = asker.call("local_request_content_info", {"content_hash": k})
            dt = time.perf_counter() - t
            return dt, r.get("status") == "success" and owner in r.get("peers", [])
        # Sequential lookups: latency is not inflated by queueing on this 2-core machine.
        for i in range(a.lookups):
            dt, good = one(i)
            lat.append(dt * 1000)
            ok += good
        sizes = [n.call("status")["routing_table_size"] for n in nodes]
        print(f"dht lookup latency: {a.nodes} nodes on loopback, +{a.latency} per datagram each way "
              f"(RTT {2 * float(a.latency.rstrip('ms')):.0f} ms), loss {a.loss}, {a.lookups} lookups of {a.keys} keys")
        print(f"  success {ok}/{a.lookups} ({100 * ok / a.lookups:.1f}%)  "
              f"latency median {statistics.median(lat):.0f} ms  p90 {pct(lat, 90):.0f} ms  p99 {pct(lat, 99):.0f} ms  "
              f"max {max(lat):.0f} ms  (routing tables {min(sizes)}..{max(sizes)} contacts; run {time.time() - t0:.0f} s)")
        print(f"  in round trips: median {statistics.median(lat) / (2 * float(a.latency.rstrip('ms'))):.1f} RTT")
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(work, ignore_errors=True)


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime, in clock ticks


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_idle(a):
    work = tempfile.mkdtemp(prefix="ps-bench-idle-")
    nodes = []
    try:
        t0 = time.time()
        nodes = network(work, a.nodes, [], parallel=16)
        started = time.time() - t0
        time.sleep(a.settle)
        tick = os.sysconf("SC_CLK_TCK")
        c0 = {n.p.pid: proc_stat(n.p.pid) for n in nodes}
        w0 = time.time()
        time.sleep(a.window)
        wall = time.time() - w0
        cpu = [100.0 * (proc_stat(n.p.pid) - c0[n.p.pid]) / tick / wall for n in nodes]
        rss = [rss_kib(n.p.pid) / 1024 for n in nodes]
        alive = sum(n.p.poll() is None for n in nodes)
        sizes = [n.call("status")["routing_table_size"] for n in nodes]
        print(f"idle nodes: {a.nodes} started together in {started:.1f} s, {alive} alive after {a.settle + a.window:.0f} s; "
              f"routing tables {min(sizes)}..{max(sizes)} contacts")
        print(f"  RSS per node: median {statistics.median(rss):.1f} MiB  max {max(rss):.1f} MiB  (goal <= 10 MiB)")
        print(f"  CPU per node over {wall:.0f} s idle: median {statistics.median(cpu):.3f}%  max {max(cpu):.3f}%  "
              f"all {a.nodes} together {sum(cpu):.2f}% of one core")
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dht")
    d.add_argument("--nodes", type=int, default=50)
    d.add_argument("--latency", default="25ms")
    d.add_argument("--loss", default="0%")
    d.add_argument("--keys", type=int, default=20)
    d.add_argument("--lookups", type=int, default=200)
    d.add_argument("--settle", type=float, default=5)
    d.add_argument("--seed", type=int, default=1)
    i = sub.add_parser("idle")
    i.add_argument("--nodes", type=int, default=200)
    i.add_argument("--settle", type=float, default=20)
    i.add_argument("--window", type=float, default=30)
    sub.add_parser("all")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} not found: run `cargo build --release` (make bench does)")
    if a.what == "dht":
        bench_dht(a)
    elif a.what == "idle":
        bench_idle(a)
    else:
        for loss in ("0%", "1%"):
            bench_dht(ap.parse_args(["dht", "--loss", loss]))
        bench_idle(ap.parse_args(["idle"]))


if __name__ == "__main__":
    main()
