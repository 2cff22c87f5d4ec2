#!/usr/bin/env python3
"""PeerShare benchmarks: figures, not pass/fail. Real processes on loopback, driven through
their real local API, side by side with the anchors in the same run (see tools/bench/README.md).

  python3 tools/bench/bench.py dht   [--nodes 50] [--latency 25ms] [--loss 0%] [--lookups 200]
  python3 tools/bench/bench.py idle  [--nodes 200] [--settle 20] [--window 30]
  python3 tools/bench/bench.py transfer-1g    [--size 1G] [--repeat 3]
  python3 tools/bench/bench.py transfer-swarm [--size 100M] [--leechers 8] [--hints all|seeder|none]
  python3 tools/bench/bench.py rss            [--sizes 1G,4G]
  python3 tools/bench/bench.py swarm-limited  [--size 100M] [--leechers 8] [--seed-limit 20MB/s]
  python3 tools/bench/bench.py multi-seed     [--size 100M] [--seeders 4] [--seed-limit 10MB/s]
  python3 tools/bench/bench.py limits         [--rates 1MB/s,5MB/s,50MB/s] [--seconds 8]
  python3 tools/bench/bench.py folder-pack    [--files 10000] [--size 50000] [--folders 50]
  python3 tools/bench/bench.py folder-swarm   [--files 10000] [--leechers 8]
  python3 tools/bench/bench.py folder-add     [--files 10000]
  python3 tools/bench/bench.py folder-v2      [--files 10000] [--changed 5%]
  python3 tools/bench/bench.py many-downloads [--files 250] [--size 100K]
  python3 tools/bench/bench.py library-scale  [--files 100000] [--window 100]
  python3 tools/bench/bench.py all   (dht at 0%, 1% and 5% loss, idle, then the eleven above)

dht:  lookup latency (median, p99) of `local_request_content_info` when every node adds the
      given one-way delay to each DHT datagram it sends (`peershare run --emulate-latency`),
      since this kernel has no netem; then first provide: from `local_announce_content` on
      one node until another node's lookup finds it.
idle: resident memory and CPU of idle nodes, all running together on this machine.
transfer-1g: one file, 1 seeder -> 1 leecher: peershare vs libtorrent-rasterbar vs curl from
      nginx (piped into SHA-256), plus raw SHA-256 and loopback TCP; ratios.
transfer-swarm: 1 seeder -> N leechers at once, time until all are complete; ratios.
rss:  the peershare leecher's peak RSS for big files (goal <= 50 MiB whatever the size).
swarm-limited: 1 seeder limited to 20 MB/s upload -> 8 unlimited leechers at once: time until
      all are complete against the ideal (size / seeder rate) and libtorrent, and how many
      copies the seeder uploaded.
multi-seed: 4 seeders limited to 10 MB/s each -> 1 leecher: its rate as a share of the 40 MB/s.
limits: the achieved rate against an up or a down limit of 1, 5 and 50 MB/s: the mean over the
      middle of the transfer and the highest over any 2 s window.
folder-*: a shared folder (a pack of 10,000 x 50 KB files in 50 folders; tools/bench/folders.py):
      1 -> 1 against tar|nc and libtorrent, 1 -> 8 against libtorrent, the add against
      find | xargs sha256sum, and v2 of the pack (5% of its files changed) on a node with v1.
      once (tools/bench/many.py): wall times, their ratio, the DHT's rate-limited and
      timed-out requests.
library-scale: 100,000 small files shared one by one through one kept-open API connection: time
      per add around the 1st, 1,000th, 10,000th and 100,000th, disk written per add, RSS, and
      start-up with the library (tools/bench/library.py).
Needs tools/bench/install-deps.sh (python3-libtorrent, nginx, curl, openssl, iperf3).
"""
import argparse, json, os, random, re, shlex, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PEERSHARE_BIN", os.path.join(ROOT, "target", "release", "peershare"))


class Node:
    def __init__(self, work, name, args, log=False):
        self.dir = os.path.join(work, name)
        cmd = [BIN, "run", "--data-dir", self.dir, "--bind", "127.0.0.1", "--port", "0",
               "--api-port", "0", "-q"] + args
        err = subprocess.DEVNULL
        if log:  # keep warnings and errors, to report what went wrong
            os.makedirs(self.dir, exist_ok=True)
            err = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        if log:
            err.close()
        info = {}
        for line in self.p.stdout:
            line = line.strip()
            if line == "ready":
                break
            if ": " in line:
                k, v = line.split(": ", 1)
                info[k] = v.split(" ")[0]
        if "api" not in info:
            self.p.kill()
            self.p.wait()
            raise SystemExit(f"node {name} did not start")
        self.listen = info["listen"]
        host, port = info["api"].rsplit(":", 1)
        self.api = (host, int(port))

    def call(self, kind, payload=None, timeout=60):
        with socket.create_connection(self.api, timeout=timeout) as s:
            s.sendall(json.dumps({"type": kind, "payload": payload or {}}).encode())
            # A bytearray grows in place: `bytes +=` copied the whole reply at every read,
            # which for a 16 MB reply (all_available_content at 100,000 shares) took seconds.
            buf = bytearray()
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
        first_provide(a, nodes, rnd)
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(work, ignore_errors=True)


def first_provide(a, nodes, rnd):
    """Issue 21: how soon a new item is findable by others. A random node announces a new
    key (`local_announce_content`, in a thread: its reply waits for the whole announce), and
    from the same moment another node runs `local_request_content_info` back to back until
    the announcer is among the peers. The time is that of the end of the first lookup that
    found it, so it includes up to one lookup more than the record needed."""
    found, missed = [], 0
    for _ in range(a.first_provides):
        k = "%064x" % rnd.getrandbits(256)
        owner = rnd.choice(nodes)
        asker = rnd.choice([n for n in nodes if n is not owner])
        t = time.perf_counter()
        th = threading.Thread(target=owner.call, args=("local_announce_content", {"content_hash": k}))
        th.start()
        got = None
        while time.perf_counter() - t < 10:
            r = asker.call("local_request_content_info", {"content_hash": k})
            if r.get("status") == "success" and owner.listen in r.get("peers", []):
                got = (time.perf_counter() - t) * 1000
                break
        th.join()
        if got is None:
            missed += 1
        else:
            found.append(got)
    if found:
        print(f"  first provide: add -> found by another node: median {statistics.median(found):.0f} ms  "
              f"p90 {pct(found, 90):.0f} ms  max {max(found):.0f} ms  ({len(found)}/{a.first_provides} found "
              f"within 10 s) [goal: median <= 1000 ms: {'met' if statistics.median(found) <= 1000 else 'NOT met'}]")
    else:
        print(f"  first provide: none of {a.first_provides} new keys found within 10 s")


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


# ----------------------------------------------------------------------------- transfers
# Side by side, on 127.0.0.1, in the same run: peershare, libtorrent-rasterbar (tools/bench/
# lt_anchor.py under Debian's /usr/bin/python3), curl from nginx, SHA-256 and loopback TCP.

HERE = os.path.dirname(os.path.abspath(__file__))
LT_PYTHON = os.environ.get("LT_PYTHON", "/usr/bin/python3")
MIB, GIB = 1 << 20, 1 << 30
_versions_printed = False
HINTS = {"all": "peer hints: seeder + other leechers", "seeder": "peer hint: seeder only",
         "none": "no peer hint: providers from the DHT"}


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size (e.g. 256M, 1G, 100MiB)")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": MIB, "g": GIB, "t": 1 << 40}[m.group(2).lower()])


def human(n):
    if n % GIB == 0:
        return f"{n // GIB} GiB"
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n} B"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def proc_stat_cpu():
    """The machine's CPU seconds so far from /proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return [x / os.sysconf("SC_CLK_TCK") for x in v]


class Load:
    """The machine's load while a scenario runs: the load average before and after, and how
    much CPU processes other than this harness and its children used meanwhile (busy time from
    /proc/stat minus our own and our reaped children's CPU time), in cores. The load average
    counts our own processes too (and tasks waiting on disk); the `others` figure does not,
    except kernel threads (disk writeback, softirq work done outside our processes)."""

    def __init__(self):
        self.avg = loadavg()
        self.wall, self.busy, self.own = time.time(), self._busy(), self._own()

    @staticmethod
    def _busy():
        v = proc_stat_cpu()
        return sum(v) - v[3] - v[4]  # minus idle and iowait

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def report(self):
        wall = max(time.time() - self.wall, 1e-9)
        others = max(0.0, (self._busy() - self.busy) - (self._own() - self.own)) / wall
        return (f"load average before {self.avg}, after {loadavg()}; other processes used "
                f"{others:.2f} of {os.cpu_count()} cores meanwhile")


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl_sha256(path):
    out = subprocess.run(["openssl", "dgst", "-sha256", "-r", path], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[0].lower()


def first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return ((p.stdout or "") + (p.stderr or "")).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError) as e:
        return f"unavailable ({e.__class__.__name__})"


def print_versions():
    global _versions_printed
    if _versions_printed:
        return
    _versions_printed = True
    lt = first_line([LT_PYTHON, "-c", "import libtorrent as lt; print('libtorrent-rasterbar', lt.__version__)"])
    print(f"versions: {first_line([BIN, '--version'])} | {lt} | {first_line(['nginx', '-v'])} | "
          f"{first_line(['curl', '--version'])} | {first_line(['openssl', 'version'])} | "
          f"{first_line(['iperf3', '--version']) if shutil.which('iperf3') else 'iperf3 not installed'}")
    print(f"machine: {os.cpu_count()} CPUs, everything on 127.0.0.1, page cache warm (inputs read "
          f"before each scenario); other work on this machine shows in the load figures")


def ensure_input(work, size):
    """A file of `size` random bytes in WORK/inputs, generated once and reused, and its SHA-256."""
    d = os.path.join(work, "inputs")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"random-{human(size).replace(' ', '')}.bin")
    sha_file = path + ".sha256"
    if os.path.exists(path) and os.path.getsize(path) == size and os.path.exists(sha_file):
        with open(sha_file) as f:
            return path, f.read().strip()
    print(f"  (generating {human(size)} of random bytes into {path}, once: later runs reuse it)", flush=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())  # no writeback of the input during the timed runs
    os.replace(tmp, path)
    sha = openssl_sha256(path)
    with open(sha_file, "w") as f:
        f.write(sha + "\n")
    return path, sha


def warm(path):
    """Reads the file through so every system starts from the page cache, after flushing dirty
    pages so earlier writes are not written back during the timed runs."""
    os.sync()
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MIB):
            pass


def tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-n:])
    except OSError:
        return ""


def diagnose(node, label, work):
    """What a node that failed or hung was doing: whether its API still answers, its threads'
    states, and (with gdb installed) every thread's backtrace, saved with its log under
    WORK/failures/ (outside the run folder, which is removed). Returns a one-line summary."""
    out = os.path.join(work, "failures", time.strftime("%Y%m%d-%H%M%S-") + label)
    os.makedirs(out, exist_ok=True)
    parts = []
    if node.p.poll() is not None:
        parts.append(f"process exited with {node.p.returncode}")
    else:
        for kind in ("status", "transfer_status"):
            try:
                r = node.call(kind, timeout=5)
                parts.append(f"{kind} answers")
                with open(os.path.join(out, kind + ".json"), "w") as f:
                    json.dump(r, f, indent=1)
            except (OSError, ValueError) as e:
                parts.append(f"{kind} does not answer ({e.__class__.__name__})")
        threads = []
        task = f"/proc/{node.p.pid}/task"
        for tid in sorted(os.listdir(task), key=int):
            try:
                comm = open(f"{task}/{tid}/comm").read().strip()
                state = open(f"{task}/{tid}/stat").read().rsplit(")", 1)[1].split()[0]
                wchan = open(f"{task}/{tid}/wchan").read().strip()
                threads.append(f"{comm}:{state}:{wchan}")
            except OSError:
                pass
        parts.append("threads " + " ".join(threads))
        if shutil.which("gdb"):
            bt = subprocess.run(["gdb", "-p", str(node.p.pid), "-batch", "-ex", "thread apply all bt"],
                                capture_output=True, text=True, timeout=120).stdout
            with open(os.path.join(out, "backtraces.txt"), "w") as f:
                f.write(bt)
    try:
        shutil.copy(os.path.join(node.dir, "stderr.log"), out)
    except OSError:
        pass
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write("\n".join(parts) + "\n")
    return f"{'; '.join(parts)} (details in {out})"


def timed_shell(cmd):
    t = time.perf_counter()
    p = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True)
    return time.perf_counter() - t, p


def timed_add(node, path, timeout, work):
    """`local_add_file` PATH on NODE: (seconds from the request to the reply, the reply), or
    (None, why) when no reply came within TIMEOUT (with what the node was doing: diagnose)."""
    t = time.perf_counter()
    try:
        r = node.call("local_add_file", {"filepath": path}, timeout=timeout)
    except (OSError, ValueError) as e:
        return None, (f"no reply to local_add_file {path} within {timeout:.0f} s "
                      f"({e.__class__.__name__}); {diagnose(node, 'add', work)}")
    return time.perf_counter() - t, r


def ps_transfer(run_dir, src, sha, leechers, hints, timeout, seeders=1, seed_args=(), leech_args=(),
                sample=0, verify=None, durable=False):
    """peershare: SEEDERS nodes (started with SEED_ARGS) share SRC (local_add_file), LEECHERS
    nodes (started with LEECH_ARGS) bootstrapped from the first seeder download it at once
    (local_request_file with the peer hint); the time runs from the first request sent to the
    last reply received. Also returns the wire bytes each seeder sent meanwhile (`status`
    bandwidth.up_total, after minus before), and with SAMPLE > 0, `samples`: every SAMPLE
    seconds until the end, (t, bytes) of leecher 0's have_bytes (`have`), its wire bytes received
    (`down`, status down_total) and the first seeder's wire bytes sent (`up`, up_total).
    DURABLE: after the last reply, `sync -f` on the output folders, and `durable` is the time
    when it returned (a folder is placed before it is synced: src/content/STATE.md).
    VERIFY(path) checks each leecher's output (an error message, or None when it is right);
    by default its SHA-256 against SHA (tools/bench/folders.py compares trees instead)."""
    res = {"time": None, "ok": False}
    if verify is None:
        verify = lambda path: None if openssl_sha256(path) == sha else f"{path} differs from the input (SHA-256)"
    work = os.path.dirname(run_dir)
    nodes = []
    try:
        seeds = [Node(run_dir, "seed", list(seed_args), log=True)]
        nodes.append(seeds[0])
        for k in range(1, seeders):
            seeds.append(Node(run_dir, f"seed{k}", list(seed_args) + ["--bootstrap", seeds[0].listen], log=True))
            nodes.append(seeds[-1])
        seed = seeds[0]
        who = lambda k: "seeder" if seeders == 1 else f"seeder {k}"
        res["add_s"] = 0.0
        for k, s in enumerate(seeds):
            dt, r = timed_add(s, src, timeout, work)
            if dt is None:
                res["error"] = f"{who(k)}: {r}"
                return res
            res["add_s"] = max(res["add_s"], dt)
            if r.get("status") != "success":
                res["error"] = f"local_add_file failed: {r}"
                return res
        cid = r["file_hash"]
        with ThreadPoolExecutor(8) as ex:
            ls = list(ex.map(lambda i: Node(run_dir, f"l{i}", ["--bootstrap", seed.listen] + list(leech_args),
                                            log=True), range(leechers)))
        nodes += ls
        outs = []
        for i in range(leechers):
            outs.append(os.path.join(run_dir, f"out{i}"))
            os.makedirs(outs[-1])

        def one(i):
            req = {"content_hash": cid, "output_dir": outs[i]}
            if hints != "none":
                req["peers"] = [s.listen for s in seeds]
            if hints == "all":
                req["peers"] += [x.listen for j, x in enumerate(ls) if j != i]
            t = time.perf_counter()
            try:
                r = ls[i].call("local_request_file", req, timeout=timeout)
            except (OSError, ValueError) as e:
                r = {"status": "error", "message": f"no reply: {e.__class__.__name__}: {e}"}
            return t, time.perf_counter(), r

        def up_total(node):  # None from a node without bandwidth counters
            return node.call("status", timeout=5).get("bandwidth", {}).get("up_total")

        # With one leecher, watch its progress (transfer_status every 50 ms) to split the time
        # into "every chunk verified" and the finish (fsync, final name).
        # With SAMPLE, also record its progress and the wire byte counters until the end.
        watch = {"stop": False, "chunks_done": None, "samples": {"have": [], "down": [], "up": []}}

        def timed(key, reply, get):  # get(reply()) recorded at the middle of the call
            t = time.perf_counter()
            v = reply()
            watch["samples"][key].append(((t + time.perf_counter()) / 2 - t0, get(v)))
            return v

        def progress(record):
            def reply():
                return ls[0].call("transfer_status", {"content_hash": cid}, timeout=5)
            if not record:
                return reply()
            st = timed("have", reply, lambda st: next((tr.get("have_bytes") for tr in st.get("transfers", [])), None))
            timed("down", lambda: ls[0].call("status", timeout=5), lambda st: st["bandwidth"]["down_total"])
            timed("up", lambda: up_total(seed), lambda v: v)
            return st

        def watcher():
            due = 0.0
            while not watch["stop"]:
                try:
                    record = sample and time.perf_counter() - t0 >= due
                    if record:
                        due += sample
                    if record or watch["chunks_done"] is None:
                        for tr in progress(record).get("transfers", []):
                            if tr.get("chunks_total") and tr.get("chunks_have") == tr.get("chunks_total"):
                                if watch["chunks_done"] is None:
                                    watch["chunks_done"] = time.perf_counter() - t0
                                if not sample:
                                    return
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.05)

        up0 = [up_total(s) for s in seeds]
        cpu0 = machine_cpu()
        # Each node's own CPU (user + system, s): what the transfer costs, whatever else runs.
        tick = os.sysconf("SC_CLK_TCK")
        own0 = {n.p.pid: proc_stat(n.p.pid) for n in nodes}
        t0 = time.perf_counter()
        w = threading.Thread(target=watcher, daemon=True)
        if leechers == 1 or sample:
            w.start()
        with ThreadPoolExecutor(leechers) as ex:
            done = list(ex.map(one, range(leechers)))
        if durable:
            subprocess.run(["sync", "-f"] + outs, check=False)
            res["durable"] = time.perf_counter() - t0
        watch["stop"] = True
        res["cpu"] = [b - a for a, b in zip(cpu0, machine_cpu())]
        res["seed_cpu"] = [(proc_stat(n.p.pid) - own0[n.p.pid]) / tick for n in seeds]
        res["leech_cpu"] = [(proc_stat(n.p.pid) - own0[n.p.pid]) / tick for n in ls]
        if leechers == 1 or sample:
            w.join()
        if sample:  # the counters' final values
            progress(True)
        res["seed_up"] = [None if b is None else up_total(s) - b for s, b in zip(seeds, up0)]
        res["chunks_done"] = watch["chunks_done"]
        res["samples"] = watch["samples"]
        res["times"] = [end - t0 for _, end, _ in done]
        res["rss_mib"] = [vm_hwm_mib(n.p.pid) for n in ls]
        res["seed_rss_mib"] = vm_hwm_mib(seed.p.pid)
        errors = []
        for i, (_, _, r) in enumerate(done):
            if r.get("status") != "success":
                errors.append(f"leecher {i}: {r.get('message', r)}")
                continue
            path = r.get("file_path") or os.path.join(outs[i], r.get("filename", ""))
            if not os.path.isabs(path):
                path = os.path.join(outs[i], path)
            if not os.path.exists(path):
                errors.append(f"leecher {i}: reply names {path}, which does not exist")
            else:
                wrong = verify(path)
                if wrong:
                    errors.append(f"leecher {i}: {wrong}")
        if errors:
            for i, n in enumerate(ls):
                errors.append(f"leecher {i}: {diagnose(n, f'leecher{i}', work)}; "
                              f"log: {tail(os.path.join(n.dir, 'stderr.log'))}")
            for k, s in enumerate(seeds):
                errors.append(f"{who(k)}: {diagnose(s, 'seeder' if k == 0 else f'seeder{k}', work)}")
            res["error"] = "; ".join(errors)
        else:
            res["ok"] = True
            res["time"] = max(res["times"])
        return res
    finally:
        for n in nodes:
            n.stop()


def lt_transfer(run_dir, src, sha, leechers, settings, timeout, seeders=1, seed_upload_limit=0,
                verify=None, lt_args=()):
    """libtorrent-rasterbar: see lt_anchor.py. Time from the first connect_peer to the last
    leecher seeding; also each seeder's payload bytes uploaded (`seed_up`). VERIFY and the
    default check as in ps_transfer; LT_ARGS: more lt_anchor.py options."""
    res = {"time": None, "ok": False}
    if verify is None:
        verify = lambda path: None if openssl_sha256(path) == sha else f"output differs from the input: {path}"
    cmd = [LT_PYTHON, os.path.join(HERE, "lt_anchor.py"), src, os.path.join(run_dir, "lt"),
           "--leechers", str(leechers), "--settings", settings, "--timeout", str(timeout)] + list(lt_args)
    if seeders != 1 or seed_upload_limit:
        cmd += ["--seeders", str(seeders), "--seed-upload-limit", str(int(seed_upload_limit))]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        res["error"] = "lt_anchor.py timed out"
        return res
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        res["error"] = f"lt_anchor.py failed (exit {p.returncode}): {p.stderr.strip()[-400:]}"
        return res
    res["add_s"] = out["hash_s"]
    res["times"] = out["times"]
    res["seed_up"] = out.get("seed_upload", [])
    res["torrent"] = out.get("torrent")
    if None in out["times"]:
        res["error"] = f"not every leecher finished within {timeout:.0f} s: {out['times']}"
        return res
    bad = [wrong for wrong in map(verify, out["files"]) if wrong]
    if bad:
        res["error"] = "; ".join(bad)
        return res
    res["ok"] = True
    res["time"] = max(out["times"])
    return res


class Nginx:
    """nginx on 127.0.0.1 serving ROOT, from a minimal config in its own directory, run in the
    foreground by us (sendfile on, access log off)."""

    def __init__(self, run_dir, root):
        self.dir = os.path.join(run_dir, "nginx")
        os.makedirs(self.dir)
        self.port = free_port()
        built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
        temps = "".join(f"  {m}_temp_path {self.dir}/{m};\n"
                        for m in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                        if f"--http-{m.replace('_', '-')}-temp-path" in built)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""{'user root;' if os.geteuid() == 0 else ''}
worker_processes {os.cpu_count()};
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
{temps}  server {{
    listen 127.0.0.1:{self.port};
    root {root};
  }}
}}
""")
        self.p = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf, "-e", f"{self.dir}/error.log"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.p.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise SystemExit(f"nginx did not start: {tail(os.path.join(self.dir, 'error.log'))}")
                time.sleep(0.05)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{os.path.basename(path)}"

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def curl_transfer(run_dir, url, sha, n, sink):
    """N concurrent `curl URL | SINK`: sink `openssl` (openssl dgst -sha256), `sha256sum`,
    `file` (curl -o FILE; the file is checked outside the timing) or `file+fsync` (the same,
    then `sync FILE`, as durable as peershare's finished download)."""
    res = {"time": None, "ok": False}
    procs, outs = [], []
    for i in range(n):
        if sink in ("file", "file+fsync"):
            outs.append(os.path.join(run_dir, f"curl{i}.bin"))
            cmd = f"curl -s --fail -o {outs[-1]} {url}"
            if sink == "file+fsync":
                cmd += f" && sync {outs[-1]}"  # coreutils sync FILE: fsync(2) of that file
        elif sink == "openssl":
            cmd = f"curl -s --fail {url} | openssl dgst -sha256 -r"
        else:
            cmd = f"curl -s --fail {url} | sha256sum"
        procs.append(["bash", "-c", "set -o pipefail; " + cmd])
    t0 = time.perf_counter()
    ps = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in procs]
    try:
        ends = [None] * n
        while None in ends:
            for i, p in enumerate(ps):
                if ends[i] is None and p.poll() is not None:
                    ends[i] = time.perf_counter() - t0
            time.sleep(0.002)
    finally:
        for p in ps:
            if p.poll() is None:
                p.kill()
    res["times"] = ends
    errors = []
    for i, p in enumerate(ps):
        out, err = p.communicate()
        if p.returncode != 0:
            errors.append(f"curl {i} exit {p.returncode}: {err.strip()[-200:]}")
        elif sink in ("file", "file+fsync"):
            if openssl_sha256(outs[i]) != sha:
                errors.append(f"curl {i}: file differs")
        elif out.split()[0].lower() != sha:
            errors.append(f"curl {i}: SHA-256 differs")
    if errors:
        res["error"] = "; ".join(errors)
    else:
        res["ok"] = True
        res["time"] = max(ends)
    return res


def iperf3_loopback(seconds=3):
    """Single-stream loopback TCP throughput in bytes/s (iperf3), or None if not installed."""
    if not shutil.which("iperf3"):
        return None
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            time.sleep(0.1)
            p = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                               capture_output=True, text=True, timeout=seconds + 30)
            if p.returncode == 0:
                return json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"] / 8
        return None
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def run_rounds(a, systems, remove=lambda d: shutil.rmtree(d, ignore_errors=True)):
    """Runs every system A.repeat times, interleaved (A B C, A B C, ...) so that a burst of
    other load on the machine hits them alike; returns {name: [result, ...]}. Each run gets a
    new folder in A.work_dir, given to REMOVE afterwards (folders.py sets its files aside)."""
    out = {name: [] for name, _ in systems}
    only = [x.strip() for x in a.only.split(",")] if a.only else None
    for _ in range(a.repeat):
        for name, fn in systems:
            if only and not any(name.startswith(o) for o in only):
                continue
            d = tempfile.mkdtemp(prefix="run-", dir=a.work_dir)
            try:
                out[name].append(fn(d))
            finally:
                remove(d)
                # Every system starts with no write-back left over from the one before:
                # a system that does not fsync its output (libtorrent, curl -o) leaves up to
                # a GiB dirty, and its write-back then ran into the next system's timing
                # (peershare 1 GiB: 1.5-2.5 s alone, 2.7-3.5 s right after libtorrent).
                os.sync()
    return out


def summary(results):
    """The median run by time (failed runs count as slowest) and the spread."""
    if not results:
        return None, "not run (--only)"
    good = sorted((r for r in results if r["ok"]), key=lambda r: r["time"])
    if len(good) < len(results):
        bad = [r for r in results if not r["ok"]]
        return None, f"FAILED {len(bad)}/{len(results)} runs: {bad[0].get('error', '?')}"
    med = good[(len(good) - 1) // 2]
    spread = "" if len(good) == 1 else f" (median of {len(good)}: {good[0]['time']:.2f}..{good[-1]['time']:.2f} s)"
    return med, spread


def machine_cpu():
    """(user, system) CPU seconds of the whole machine so far (user includes nice, system
    includes irq and softirq)."""
    f = proc_stat_cpu()
    return (f[0] + f[1], f[2] + f[5] + f[6])


def cpu_note(r):
    """`; machine CPU user U s, system S s`: on a VM whose host takes back free memory, slow
    rounds show up as more system time (fresh page-cache pages fault in the host)."""
    c = r.get("cpu")
    out = "" if not c else f"; machine CPU user {c[0]:.2f} s, system {c[1]:.2f} s"
    if r.get("seed_cpu") and r.get("leech_cpu"):
        out += (f" (the nodes' own: seeder {sum(r['seed_cpu']):.2f} s, "
                f"leecher{'s' if len(r['leech_cpu']) > 1 else ''} {sum(r['leech_cpu']):.2f} s)")
    return out


def split(r):
    """`every chunk verified at X s (+Y s to finish)` when the watcher saw it."""
    c = r.get("chunks_done")
    if c is None or r.get("time") is None:
        return ""
    return f"; every chunk verified at {c:.2f} s, then {r['time'] - c:.2f} s to finish"


def rate(size, t):
    return f"{size / MIB / t:7.0f} MiB/s" if t else "      - MiB/s"


def line(name, size, results, extra=lambda r: ""):
    med, spread = summary(results)
    if med is None:
        print(f"  {name:<24} {spread}")
        return None
    print(f"  {name:<24} {med['time']:7.2f} s {rate(size, med['time'])}{spread}{extra(med)}")
    return med["time"]


def ratio(name, res, a, b, goal):
    """Median time of A over median time of B, and the same ratio round by round (the systems
    of one round ran back to back, so they saw much the same load)."""
    ma, _ = summary(res[a])
    mb, _ = summary(res[b])
    if ma is None or mb is None:
        print(f"  ratio {name}: n/a (a run failed or was not run)")
        return
    rounds = [x["time"] / y["time"] for x, y in zip(res[a], res[b])]
    per = "" if len(rounds) < 2 else f"  per round {', '.join(f'{r:.2f}' for r in rounds)}"
    print(f"  ratio {name} = {ma['time'] / mb['time']:.2f}  "
          f"({'for reference' if goal is None else f'goal <= {goal}'}){per}")


def bench_transfer_1g(a):
    print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    src, sha = ensure_input(a.work_dir, a.size)
    size = a.size
    timeout = a.timeout or 120 + size / (10 * MIB)
    warm(src)
    print(f"transfer-1g: {human(size)} of random bytes, 1 seeder -> 1 leecher on 127.0.0.1, "
          f"{a.repeat} rounds", flush=True)
    load = Load()
    ngx = Nginx(tempfile.mkdtemp(prefix="nginx-", dir=a.work_dir), os.path.dirname(src))
    try:
        url = ngx.url(src)
        res = run_rounds(a, [
            ("peershare", lambda d: ps_transfer(d, src, sha, 1, a.hints, timeout)),
            ("libtorrent", lambda d: lt_transfer(d, src, sha, 1, a.lt_settings, timeout)),
            ("curl|openssl", lambda d: curl_transfer(d, url, sha, 1, "openssl")),
            ("curl|sha256sum", lambda d: curl_transfer(d, url, sha, 1, "sha256sum")),
            ("curl -o file", lambda d: curl_transfer(d, url, sha, 1, "file")),
            ("curl -o file+fsync", lambda d: curl_transfer(d, url, sha, 1, "file+fsync")),
        ])
    finally:
        ngx.stop()
        shutil.rmtree(os.path.dirname(ngx.dir), ignore_errors=True)
    t_sha = min(timed_shell(f"openssl dgst -sha256 {src} >/dev/null")[0] for _ in range(2))
    t_sum = timed_shell(f"sha256sum {src} >/dev/null")[0]
    tcp = iperf3_loopback()

    ps = line("peershare", size, res["peershare"], lambda r: (
        f"  identical{split(r)}{cpu_note(r)}; add (hash) {r['add_s']:.2f} s; leecher peak RSS {r['rss_mib'][0]:.1f} MiB (goal <= 50) "
        f"(seeder {r['seed_rss_mib']:.1f} MiB); {HINTS['seeder' if a.hints == 'all' else a.hints]}"))
    line(f"libtorrent ({a.lt_settings})", size, res["libtorrent"], lambda r: (
        f"  identical; create_torrent (hash) {r['add_s']:.2f} s"))
    line("curl|openssl sha256", size, res["curl|openssl"], lambda r: "  hash matches")
    cs = line("curl|sha256sum", size, res["curl|sha256sum"], lambda r: "  hash matches")
    line("curl -o file", size, res["curl -o file"], lambda r: "  identical")
    line("curl -o file; sync file", size, res["curl -o file+fsync"], lambda r: "  identical, fsynced")
    print(f"  {'sha256 (openssl)':<24} {t_sha:7.2f} s {rate(size, t_sha)}   coreutils sha256sum {t_sum:.2f} s {rate(size, t_sum).strip()}")
    if tcp:
        print(f"  {'loopback TCP (iperf3)':<24} {size / tcp:7.2f} s {tcp / MIB:7.0f} MiB/s  (1 stream, 3 s)")
    else:
        print("  loopback TCP: skipped (iperf3 not installed: tools/bench/install-deps.sh)")
    ratio("peershare / libtorrent", res, "peershare", "libtorrent", 0.5)
    ratio("peershare / (curl|openssl sha256)", res, "peershare", "curl|openssl", 1.2)
    if ps and cs:
        print(f"  (for reference: peershare / (curl|sha256sum) = {ps / cs:.2f}; the ratio above uses "
              f"openssl, the faster hasher, so curl's side is not slowed by coreutils)")
    print(f"  {load.report()}", flush=True)


def bench_transfer_swarm(a):
    print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    src, sha = ensure_input(a.work_dir, a.size)
    size, n = a.size, a.leechers
    timeout = a.timeout or 120 + n * size / (5 * MIB)
    warm(src)
    print(f"transfer-swarm: {human(size)}, 1 seeder -> {n} leechers at once on 127.0.0.1, nothing "
          f"throttled, time until all are complete, {a.repeat} rounds", flush=True)
    load = Load()
    ngx = Nginx(tempfile.mkdtemp(prefix="nginx-", dir=a.work_dir), os.path.dirname(src))
    try:
        url = ngx.url(src)
        res = run_rounds(a, [
            ("peershare", lambda d: ps_transfer(d, src, sha, n, a.hints, timeout)),
            ("libtorrent", lambda d: lt_transfer(d, src, sha, n, a.lt_settings, timeout)),
            ("curl|openssl", lambda d: curl_transfer(d, url, sha, n, "openssl")),
            ("curl|sha256sum", lambda d: curl_transfer(d, url, sha, n, "sha256sum")),
        ])
    finally:
        ngx.stop()
        shutil.rmtree(os.path.dirname(ngx.dir), ignore_errors=True)
    each = lambda r: f"  each {min(r['times']):.2f}..{max(r['times']):.2f} s"
    agg = n * size
    line("peershare", agg, res["peershare"], lambda r: (
        f"{each(r)}; all identical{cpu_note(r)}; leecher peak RSS max {max(r['rss_mib']):.1f} MiB "
        f"(seeder {r['seed_rss_mib']:.1f} MiB); {HINTS[a.hints]}"))
    line(f"libtorrent ({a.lt_settings})", agg, res["libtorrent"], lambda r: f"{each(r)}; all identical")
    line(f"{n}x curl|openssl", agg, res["curl|openssl"], lambda r: f"{each(r)}; hashes match")
    line(f"{n}x curl|sha256sum", agg, res["curl|sha256sum"], lambda r: f"{each(r)}; hashes match")
    print("  (MiB/s here is the aggregate: all leechers' bytes / time until the last completes)")
    ratio("peershare / libtorrent", res, "peershare", "libtorrent", 0.5)
    ratio(f"peershare / ({n}x curl|openssl sha256)", res, "peershare", "curl|openssl", 1.2)
    print(f"  {load.report()}", flush=True)


def bench_rss(a):
    print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    print("rss: peershare leecher peak RSS (VmHWM) downloading one file, 1 seeder -> 1 leecher "
          "(goal <= 50 MiB whatever the size)", flush=True)
    for size in a.sizes:
        path = os.path.join(a.work_dir, "inputs", f"random-{human(size).replace(' ', '')}.bin")
        cached = os.path.exists(path) and os.path.getsize(path) == size
        need = size * (2 if cached else 3)
        free = shutil.disk_usage(a.work_dir).free
        if free < need:
            print(f"  {human(size):>7}: SKIPPED: {free / GIB:.1f} GiB free in {a.work_dir}, this needs "
                  f"{need / GIB:.0f} GiB (input{' cached' if cached else ''} + output + margin)")
            continue
        src, sha = ensure_input(a.work_dir, size)
        warm(src)
        load = Load()
        d = tempfile.mkdtemp(prefix="run-", dir=a.work_dir)
        try:
            r = ps_transfer(d, src, sha, 1, a.hints, a.timeout or 120 + size / (10 * MIB))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        if not r["ok"]:
            print(f"  {human(size):>7}: FAILED: {r.get('error')}")
            continue
        rss = r["rss_mib"][0]
        print(f"  {human(size):>7}: leecher peak RSS {rss:6.1f} MiB  {'within' if rss <= 50 else 'ABOVE'} goal;  "
              f"seeder {r['seed_rss_mib']:.1f} MiB;  transfer {r['time']:.2f} s {rate(size, r['time']).strip()}, "
              f"identical{split(r)}; add (hash) {r['add_s']:.2f} s", flush=True)
        print(f"           {load.report()}", flush=True)


def parse_rate(text):
    """A rate in bytes/s, as `peershare run --up-limit` reads it: 20MB/s, 500KB/s, 5MiB/s, 1000."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|kB|MB|GB|KiB|MiB|GiB)?\s*(?:/s|ps)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"`{text}` is not a rate above 0 (e.g. 20MB/s; MB = 10^6 bytes)")
    mult = {None: 1, "B": 1, "KB": 1000, "kB": 1000, "MB": 10**6, "GB": 10**9,
            "KiB": 1 << 10, "MiB": MIB, "GiB": GIB}[m.group(2)]
    return int(round(float(m.group(1)) * mult))


def mbs(bps):
    return f"{bps / 1e6:g} MB/s"


def limit_arg(flag, bps):
    return [flag, f"{int(bps)}B/s"]


def seed_args_note(a):
    return f"; peershare seeders also run with `{a.seed_args}`" if a.seed_args else ""


def steady(points, window=2.0, lo=0.2, hi=0.8):
    """From (t, bytes) samples of a byte counter: the mean rate over the middle of the transfer
    (from LO to HI of the time between the last sample before the counter moved and the first at
    99% of its final value: start-up and the tail left out), the highest rate between two
    samples at least WINDOW seconds apart (the nearest such pair; over all samples) and the
    lowest (pairs within that middle: a stall shows there), in bytes/s, and the time the
    counter first moved; None for what the samples are too few for."""
    pts = [(t, v) for t, v in points if v is not None]
    if len(pts) < 4 or pts[-1][1] <= pts[0][1]:
        return None, None, None, None
    v0, v1 = pts[0][1], pts[-1][1]
    i0 = max(0, next(i for i, (_, v) in enumerate(pts) if v > v0) - 1)
    i1 = next(i for i, (_, v) in enumerate(pts) if v >= v0 + 0.99 * (v1 - v0))
    ta, tb = pts[i0][0], pts[i1][0]
    near = lambda x: min(range(i0, i1 + 1), key=lambda i: abs(pts[i][0] - (ta + x * (tb - ta))))
    a, b = near(lo), near(hi)
    mean = (pts[b][1] - pts[a][1]) / (pts[b][0] - pts[a][0]) if b > a else None
    best, worst, j = None, None, 0
    for i in range(len(pts)):
        while j < len(pts) and pts[j][0] - pts[i][0] < window:
            j += 1
        if j == len(pts):
            break
        r = (pts[j][1] - pts[i][1]) / (pts[j][0] - pts[i][0])
        best = r if best is None else max(best, r)
        if a <= i and j <= b:
            worst = r if worst is None else min(worst, r)
    return mean, best, worst, pts[min(i0 + 1, len(pts) - 1)][0]


def rounds(results, fmt):
    """`; per round a, b, c` for several rounds (fmt formats one run), else ``."""
    if len(results) < 2:
        return ""
    return "; per round " + ", ".join(fmt(r) if r["ok"] else "FAILED" for r in results)


def limited_rounds(a, src, sha, leechers, seeders, lim, timeout, sample=0):
    """Rounds of peershare and libtorrent: SEEDERS seeders, each limited to LIM bytes/s of
    upload (peershare's also run with --seed-args) -> LEECHERS unlimited leechers at once."""
    return run_rounds(a, [
        ("peershare", lambda d: ps_transfer(d, src, sha, leechers, a.hints, timeout, seeders=seeders,
                                            seed_args=limit_arg("--up-limit", lim) + shlex.split(a.seed_args),
                                            sample=sample)),
        ("libtorrent", lambda d: lt_transfer(d, src, sha, leechers, a.lt_settings, timeout, seeders=seeders,
                                             seed_upload_limit=lim)),
    ])


def bench_swarm_limited(a):
    print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    src, sha = ensure_input(a.work_dir, a.size)
    size, n, lim = a.size, a.leechers, a.seed_limit
    ideal = size / lim
    timeout = a.timeout or 120 + 3 * ideal + n * size / (5 * MIB)
    warm(src)
    print(f"swarm-limited: {human(size)}, 1 seeder limited to {mbs(lim)} upload -> {n} leechers "
          f"(unlimited) at once on 127.0.0.1, time until all are complete, {a.repeat} rounds; "
          f"ideal = size / seeder rate = {ideal:.2f} s{seed_args_note(a)}", flush=True)
    load = Load()
    res = limited_rounds(a, src, sha, n, 1, lim, timeout)
    res["ideal"] = [{"ok": True, "time": ideal}] * max(1, len(res["peershare"]), len(res["libtorrent"]))
    each = lambda r: f"  each {min(r['times']):.2f}..{max(r['times']):.2f} s"
    copies = lambda r: sum(r["seed_up"]) / size
    sent = lambda r, what: (f"; seeder sent {copies(r):.2f} copies = {100 * copies(r) / n:.0f}% of the {n} "
                            f"downloaded ({what}), on average {sum(r['seed_up']) / r['time'] / 1e6:.1f} MB/s "
                            f"= {100 * sum(r['seed_up']) / r['time'] / lim:.0f}% of its limit")
    line("peershare", n * size, res["peershare"], lambda r: (
        f"{each(r)}; all identical{sent(r, 'wire bytes, status up_total')}"
        f"{rounds(res['peershare'], lambda x: f'{copies(x):.2f}')}; {HINTS[a.hints]}"))
    line(f"libtorrent ({a.lt_settings})", n * size, res["libtorrent"], lambda r: (
        f"{each(r)}; all identical{sent(r, 'total_payload_upload')}"
        f"{rounds(res['libtorrent'], lambda x: f'{copies(x):.2f}')}"))
    print(f"  {'ideal':<24} {ideal:7.2f} s  (size / the seeder's upload limit)")
    print("  (MiB/s here is the aggregate: all leechers' bytes / time until the last completes)")
    ratio("peershare / ideal", res, "peershare", "ideal", 1.3)
    ratio("peershare / libtorrent", res, "peershare", "libtorrent", 0.5)
    ratio("libtorrent / ideal", res, "libtorrent", "ideal", None)
    print(f"  {load.report()}", flush=True)


def bench_multi_seed(a):
    print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    src, sha = ensure_input(a.work_dir, a.size)
    size, m, lim = a.size, a.seeders, a.seed_limit
    agg = m * lim
    timeout = a.timeout or 120 + 3 * size / agg
    warm(src)
    print(f"multi-seed: {human(size)}, {m} seeders each limited to {mbs(lim)} upload -> 1 leecher "
          f"(unlimited) on 127.0.0.1, {a.repeat} rounds; the leecher's rate as a share of the "
          f"{mbs(agg)} aggregate (goal >= 90%; ideal {size / agg:.2f} s){seed_args_note(a)}", flush=True)
    load = Load()
    res = limited_rounds(a, src, sha, 1, m, lim, timeout, sample=a.sample)
    share = lambda r: 100 * size / r["time"] / agg
    split_up = lambda r: "/".join(f"{100 * x / max(1, sum(r['seed_up'])):.0f}" for x in r["seed_up"])

    def ps_extra(r):
        mean = steady(r["samples"]["down"])[0]
        st = "" if mean is None else (f"; steady (middle 60%, leecher's wire bytes) {mean / 1e6:.1f} MB/s = "
                                      f"{100 * mean / agg:.1f}%")
        return (f"  = {share(r):.1f}% of {mbs(agg)}{rounds(res['peershare'], lambda x: f'{share(x):.1f}%')}"
                f"{st}{split(r)}; seeders sent {split_up(r)}% of their bytes; identical; "
                f"{'peer hints: every seeder' if a.hints != 'none' else HINTS['none']}")
    line("peershare", size, res["peershare"], ps_extra)
    line(f"libtorrent ({a.lt_settings})", size, res["libtorrent"], lambda r: (
        f"  = {share(r):.1f}% of {mbs(agg)}{rounds(res['libtorrent'], lambda x: f'{share(x):.1f}%')}; "
        f"seeders sent {split_up(r)}% of their bytes; identical"))
    print(f"  {'ideal':<24} {size / agg:7.2f} s {rate(size, size / agg)}  (size / {mbs(agg)})")
    print(f"  {load.report()}", flush=True)


def bench_limits(a):
    print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    print(f"limits: the achieved rate against a limit, 1 seeder -> 1 leecher on 127.0.0.1, {a.repeat} "
          f"rounds. Measured on the limited node's wire byte counter (`status` bandwidth up_total or "
          f"down_total: the payload plus well under 0.1% of framing) sampled every {a.sample:g} s: the "
          f"mean over the middle 60% of the transfer (goal: within 5% below the limit), the highest "
          f"rate over any 2 s window (the tests' bound: <= 105%) and the lowest within that middle (a "
          f"stall shows there); end to end = size / time from request to reply (start-up and finish "
          f"included; a round below 95% says when bytes first moved and when every chunk was in)",
          flush=True)
    print(f"  {'limit':<30} {'size':>8}  {'mean (median, range)':<22} {'max 2 s':<8} {'min 2 s':<8} end to end")
    load = Load()
    for lim in a.rates:
        size = min(a.max_size, max(4 * MIB, -(-int(lim * a.seconds) // MIB) * MIB))
        src, sha = ensure_input(a.work_dir, size)
        warm(src)
        timeout = a.timeout or 120 + 3 * size / lim
        cases = [("up", "seeder --up-limit", {"seed_args": limit_arg("--up-limit", lim)}),
                 ("down", "leecher --down-limit", {"leech_args": limit_arg("--down-limit", lim)})]
        res = run_rounds(a, [(f"peershare {kind}", lambda d, kw=kw: ps_transfer(
            d, src, sha, 1, a.hints, timeout, sample=a.sample, **kw)) for kind, _, kw in cases])
        for kind, what, _ in cases:
            runs = res[f"peershare {kind}"]
            label = f"{mbs(lim)}, {what}"
            if not runs:
                print(f"  {label:<30} not run (--only)")
                continue
            bad = [r for r in runs if not r["ok"]]
            if bad:
                print(f"  {label:<30} FAILED {len(bad)}/{len(runs)} runs: {bad[0].get('error', '?')}")
                continue
            figs = [steady(r["samples"][kind]) for r in runs]
            pcts = lambda k: [100 * f[k] / lim for f in figs if f[k] is not None] or [float("nan")]
            means = pcts(0)
            e2e = lambda r: 100 * size / r["time"] / lim
            mean = f"{statistics.median(means):5.1f}%" + (f" ({min(means):.1f}..{max(means):.1f})"
                                                          if len(means) > 1 else "")

            def why(r, f):
                if e2e(r) >= 95:
                    return f"{e2e(r):.1f}%"
                done = r.get("chunks_done")
                return (f"{e2e(r):.1f}% (bytes from {'?' if f[3] is None else f'{f[3]:.2f}'} s, every chunk in at "
                        f"{'?' if done is None else f'{done:.2f}'} s, reply at {r['time']:.2f} s)")
            per = [why(r, f) for r, f in zip(runs, figs)]
            per = ("; per round " + ", ".join(per) if len(runs) > 1
                   else "" if e2e(runs[0]) >= 95 else f"; {per[0]}")
            print(f"  {label:<30} {human(size):>8}  {mean:<22} {max(pcts(1)):5.1f}%   "
                  f"{min(pcts(2)):5.1f}%   {statistics.median(e2e(r) for r in runs):5.1f}%{per}", flush=True)
    print(f"  {load.report()}", flush=True)


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
    d.add_argument("--first-provides", type=int, default=20)
    i = sub.add_parser("idle")
    i.add_argument("--nodes", type=int, default=200)
    i.add_argument("--settle", type=float, default=20)
    i.add_argument("--window", type=float, default=30)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--work-dir", default=os.environ.get("PS_BENCH_DIR", "/tmp/peershare-bench"),
                        help="inputs are cached in WORK_DIR/inputs; runs use temporary subfolders "
                             "(default /tmp/peershare-bench or $PS_BENCH_DIR)")
    common.add_argument("--repeat", type=int, default=3, help="rounds per system; the median is reported")
    common.add_argument("--lt-settings", choices=["hp", "default"], default="hp",
                        help="libtorrent settings pack: high_performance_seed (the faster here) or defaults")
    common.add_argument("--hints", choices=["all", "seeder", "none"], default="all",
                        help="peers named in each peershare local_request_file: the seeder and the "
                             "other leechers (as libtorrent is connected; default), the seeder only, "
                             "or none (found through the DHT, which every leecher joined through the seeder)")
    common.add_argument("--only", default="",
                        help="comma-separated systems to run, by name prefix (e.g. peershare,libtorrent)")
    common.add_argument("--timeout", type=float, default=0,
                        help="seconds to wait for one add or download (default: 120 + 10 MiB/s)")
    t = sub.add_parser("transfer-1g", parents=[common], help="1 seeder -> 1 leecher, side by side")
    t.add_argument("--size", type=parse_size, default=GIB, help="file size (default 1G), e.g. 256M")
    w = sub.add_parser("transfer-swarm", parents=[common], help="1 seeder -> N leechers at once")
    w.add_argument("--size", type=parse_size, default=100 * MIB, help="file size (default 100M)")
    w.add_argument("--leechers", type=int, default=8)
    r = sub.add_parser("rss", parents=[common], help="leecher peak RSS for big files")
    r.add_argument("--sizes", type=lambda v: [parse_size(x) for x in v.split(",")], default=[GIB, 4 * GIB],
                   help="comma-separated sizes (default 1G,4G)")
    seeded = argparse.ArgumentParser(add_help=False, parents=[common])
    seeded.add_argument("--size", type=parse_size, default=100 * MIB, help="file size (default 100M)")
    seeded.add_argument("--seed-args", default="",
                        help="more `peershare run` options for the peershare seeders, e.g. "
                             "--seed-args=--no-super-seed (libtorrent is not affected)")
    sl = sub.add_parser("swarm-limited", parents=[seeded],
                        help="1 seeder with an upload limit -> N unlimited leechers at once")
    sl.add_argument("--leechers", type=int, default=8)
    sl.add_argument("--seed-limit", type=parse_rate, default=20 * 10**6,
                    help="the seeder's upload limit (default 20MB/s; MB = 10^6 bytes)")
    ms = sub.add_parser("multi-seed", parents=[seeded],
                        help="M seeders, each with an upload limit -> 1 unlimited leecher")
    ms.add_argument("--seeders", type=int, default=4)
    ms.add_argument("--seed-limit", type=parse_rate, default=10 * 10**6,
                    help="each seeder's upload limit (default 10MB/s)")
    ms.add_argument("--sample", type=float, default=0.25,
                    help="seconds between samples of the leecher's byte counter (default 0.25)")
    li = sub.add_parser("limits", parents=[common], help="the achieved rate against up and down limits")
    li.add_argument("--rates", type=lambda v: [parse_rate(x) for x in v.split(",")],
                    default=[10**6, 5 * 10**6, 50 * 10**6],
                    help="comma-separated limits (default 1MB/s,5MB/s,50MB/s; a bare number is bytes/s)")
    li.add_argument("--seconds", type=float, default=8,
                    help="file size = this many seconds of data at the limit (default 8), whole MiB")
    li.add_argument("--max-size", type=parse_size, default=256 * MIB,
                    help="cap on that file size (default 256M)")
    li.add_argument("--sample", type=float, default=0.25,
                    help="seconds between samples of the byte counters (default 0.25)")
    folders.add_parsers(sub, common)
    many.add_parsers(sub, common)
    library.add_parsers(sub, common)
    sub.add_parser("all", parents=[common])
    a = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} not found: run `cargo build --release` (make bench does)")
    # SIGTERM unwinds like Ctrl-C, so every scenario's finally stops its processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.what == "dht":
        bench_dht(a)
    elif a.what == "idle":
        bench_idle(a)
    elif a.what == "transfer-1g":
        bench_transfer_1g(a)
    elif a.what == "transfer-swarm":
        bench_transfer_swarm(a)
    elif a.what in ("rss", "swarm-limited", "multi-seed", "limits"):
        globals()["bench_" + a.what.replace("-", "_")](a)
    elif a.what in folders.SCENARIOS:
        folders.run(a)
    elif a.what in many.SCENARIOS:
        many.run(a)
    elif a.what in library.SCENARIOS:
        library.run(a)
    else:
        t0 = time.time()
        for loss in ("0%", "1%", "5%"):
            bench_dht(ap.parse_args(["dht", "--loss", loss]))
        bench_idle(ap.parse_args(["idle"]))
        same = ["--work-dir", a.work_dir, "--repeat", str(a.repeat), "--lt-settings", a.lt_settings,
                "--hints", a.hints, "--timeout", str(a.timeout), "--only", a.only]
        for what in ("transfer-1g", "transfer-swarm", "rss", "swarm-limited", "multi-seed", "limits"):
            sys.stdout.flush()
            globals()["bench_" + what.replace("-", "_")](ap.parse_args([what] + same))
        for what in folders.SCENARIOS:
            sys.stdout.flush()
            folders.run(ap.parse_args([what] + same))
        sys.stdout.flush()
        many.run(ap.parse_args(["many-downloads"] + same))
        library.run(ap.parse_args(["library-scale", "--work-dir", a.work_dir]))
        print(f"all: {time.time() - t0:.0f} s", flush=True)
    # A wrong byte in a received folder is a failure, whatever the figures.
    if folders.WRONG:
        print(f"FAILED: {len(folders.WRONG)} received folder(s) differ from the input:", flush=True)
        for w in folders.WRONG:
            print(f"  {w}")
        sys.exit(1)


# The folder scenarios live in their own module (tools/bench/folders.py), which uses this one's
# nodes, anchors and printing: `import bench` there must find this module, also when it runs
# as the script.
sys.modules.setdefault("bench", sys.modules[__name__])
import folders  # noqa: E402
import many  # noqa: E402
import library  # noqa: E402

if __name__ == "__main__":
    main()
