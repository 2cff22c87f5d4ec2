#!/usr/bin/env python3
"""PeerShare soak test: a network of real `peershare` processes on loopback, working for a long
time under churn, garbage and a lying peer, watched for leaks, panics and wrong bytes.

  python3 tools/soak/soak.py [--nodes 60] [--minutes 30] [--out DIR] ...   (make soak)
  python3 tools/soak/soak.py --nodes 15 --minutes 2                        (a short run)

What runs (tools/soak/README.md has the details):
- NODES processes `peershare run` on 127.0.0.1, fixed ports; node 0 is the bootstrap and is
  never killed. Seeders (--seeders) share a catalogue of --files files of seeded random bytes
  (1 to 64 MiB) in place, each file by --copies of them. Every other node but node 0 (which
  only serves the DHT, so its figures show what the DHT and the flood cost) downloads
  continuously: --slots downloads at a time, each a file it does not hold, into a
  fresh folder, checked byte for byte (SHA-256) against the original; a finished copy is kept
  for a while (it is served to others), then deleted and the node made to notice (it
  withdraws the content), so the same files can be fetched again and the disk stays bounded.
- Churn: every 20-40 s a random node other than node 0 is killed with SIGKILL and restarted
  on the same data dir and ports 5-30 s later; its downloads in progress are asked for again
  (local_request_file reattaches to the download the node resumed).
- A liar (liar.py, a Python process speaking the wire protocol): real manifests, corrupt
  chunks; every download names it as a peer hint.
- A flooder (flood.py, a Python process): garbage at every node's DHT, wire and API ports.
- Every --sample seconds: RSS, open file descriptors and threads of every node process, into
  OUT/samples.csv. At the end: growth per node after warm-up, within its last life (a
  restarted process starts fresh), panics in the nodes' logs, downloads completed, failed
  and mismatched.

Exit status 0 only if no node panicked, every download was byte-identical, and nothing grew
by more than --max-growth after warm-up (the rule is in growth_verdict()). Needs Linux (/proc).
"""
import argparse
import csv
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import peerwire  # noqa: E402

BIN = os.environ.get("PEERSHARE_BIN", os.path.join(ROOT, "target", "release", "peershare"))
MIB = 1 << 20
FILE_SIZES_MIB = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]  # cycled when --files is larger
# The nodes' own ports come from below the kernel's ephemeral range, so that no outgoing
# connection takes a killed node's port before it restarts on it.
PORT_RANGE = (20000, 32000)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_range(text):
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


class Counters:
    """Thread-safe named counters, and a list of notable events for the report."""

    def __init__(self):
        self.lock = threading.Lock()
        self.n = {}
        self.events = []

    def add(self, key, k=1):
        with self.lock:
            self.n[key] = self.n.get(key, 0) + k

    def get(self, key):
        with self.lock:
            return self.n.get(key, 0)

    def event(self, text):
        with self.lock:
            self.events.append(text)
        log(text)


# ----------------------------------------------------------------------------- nodes

class Node:
    """One `peershare run` process and its restarts (lives). `up` is set while its API can be
    used; the churn clears it before killing the process."""

    def __init__(self, idx, role, data_dir, log_path, port, api_port, bootstrap, extra):
        self.idx, self.role = idx, role
        self.name = f"n{idx}"
        self.data_dir, self.log_path = data_dir, log_path
        self.port, self.api_port = port, api_port
        self.listen = f"127.0.0.1:{port}"
        self.bootstrap, self.extra = bootstrap, extra
        self.proc = None
        self.life = 0
        self.up = threading.Event()
        self.lock = threading.Lock()
        # Downloads: content IDs in progress here, finished copies kept for a while, and
        # copies being deleted and withdrawn. A content in any of them is not fetched anew.
        self.active = set()
        self.held = {}  # content ID -> (path, release time)
        self.releasing = set()

    def busy(self):
        with self.lock:
            return self.active | set(self.held) | self.releasing

    def start(self, t_run, timeout=60):
        cmd = [BIN, "run", "--data-dir", self.data_dir, "--bind", "127.0.0.1", "--port", str(self.port),
               "--api-port", str(self.api_port)] + self.extra
        if self.bootstrap:
            cmd += ["--bootstrap", self.bootstrap]
        with open(self.log_path, "ab") as f:  # one log per node, every life appended
            f.write(f"=== soak: life {self.life + 1} starts at t={t_run:.0f} s\n".encode())
            f.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, text=True)
        self.proc = proc  # at once, so that a harness stopping now kills it too
        lines = queue.Queue()

        def pump():  # keeps reading stdout so the node never blocks on a full pipe
            for line in proc.stdout:
                lines.put(line.strip())
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line == "ready":
                break
            if line is None:
                proc.kill()
                proc.wait()
                return False
        self.life += 1
        self.up.set()
        return True

    def kill(self):
        self.up.clear()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def call(self, kind, payload=None, timeout=30):
        """One API request on its own connection; the reply object. Raises OSError or
        ValueError when the node is unreachable or the reply is cut off (a kill)."""
        with socket.create_connection(("127.0.0.1", self.api_port), timeout=timeout) as s:
            s.sendall(json.dumps({"type": kind, "payload": payload or {}}).encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)


def free_ports(n, taken):
    """N ports in PORT_RANGE free for TCP and UDP on 127.0.0.1 right now."""
    out = []
    p = random.randrange(*PORT_RANGE)
    while len(out) < n:
        p = p + 1 if p + 1 < PORT_RANGE[1] else PORT_RANGE[0]
        if p in taken:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        taken.add(p)
        out.append(p)
    return out


def proc_sample(pid):
    """(rss_kb, fds, threads, sockets, files, deleted, other) of a live process, or None. The
    open file descriptors are also counted by kind, to tell where growth comes from: sockets,
    files, files deleted while open (their disk space is not freed while they stay open), and
    the rest (pipes, epoll, eventfd, /dev/null)."""
    try:
        rss = thr = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    thr = int(line.split()[1])
        kinds = {"socket": 0, "file": 0, "deleted": 0, "other": 0}
        fds = os.listdir(f"/proc/{pid}/fd")
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:"):
                kinds["socket"] += 1
            elif target.endswith(" (deleted)"):
                kinds["deleted"] += 1
            elif target.startswith("/") and not target.startswith("/dev/"):
                kinds["file"] += 1
            else:
                kinds["other"] += 1
        return (rss, len(fds), thr, kinds["socket"], kinds["file"], kinds["deleted"], kinds["other"])
    except (OSError, ValueError):
        return None


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def socket_census(nodes):
    """What each node's sockets are, from /proc/PID/fd and /proc/net/{tcp,udp}: a dict
    node name -> {"kind state": count}. Kinds: listen, api (the API port: our requests and
    the flooder's), wire-in from a node (127.0.0.1) or the flooder (127.0.0.2), wire-out to
    a node or to the liar, udp, other. A growing CLOSE_WAIT count would be connections the
    peer closed and the node never did."""
    table = {}
    for name in ("tcp", "udp"):
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    v = line.split()
                    lip, lport = v[1].split(":")
                    rip, rport = v[2].split(":")
                    ip = lambda h: ".".join(str(int(h[i:i + 2], 16)) for i in (6, 4, 2, 0))
                    table[v[9]] = (name, int(lport, 16), ip(rip), int(rport, 16), int(v[3], 16))
        except OSError:
            pass
    node_ports = {n.port for n in nodes}
    out = {}
    for n in nodes:
        if not (n.up.is_set() and n.proc and n.proc.poll() is None):
            continue
        counts = {}
        try:
            fds = os.listdir(f"/proc/{n.proc.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{n.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            entry = table.get(target[8:-1])
            if entry is None:
                kind = "not in /proc/net/tcp,udp"
            elif entry[0] == "udp":
                kind = "udp"
            else:
                _, lport, rip, rport, st = entry
                state = TCP_STATES.get(st, str(st))
                if state == "LISTEN":
                    kind = "listen"
                elif lport == n.api_port:
                    kind = f"api {state}"
                elif lport == n.port:
                    kind = f"wire-in from {'flooder' if rip == '127.0.0.2' else 'node'} {state}"
                elif rport in node_ports and rip == "127.0.0.1":
                    kind = f"wire-out to node {state}"
                elif rip.startswith("127.0.0.") and rip != "127.0.0.1":
                    kind = f"wire-out to liar {state}"
                else:
                    kind = f"other {rip}:{rport} {state}"
            counts[kind] = counts.get(kind, 0) + 1
        out[n.name] = counts
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


# ----------------------------------------------------------------------------- the run

class Soak:
    def __init__(self, a):
        self.a = a
        self.rnd = random.Random(a.seed)
        self.stop = threading.Event()
        self.c = Counters()
        self.t0 = time.monotonic()
        self.nodes = []
        self.files = []  # {"path", "content_id", "size", "sha256", "seeders"}
        self.helpers = []  # the liar and flooder processes
        self.restarts = []  # threads restarting killed nodes
        self.down_at_end = []
        self.census = {}  # socket_census() at the start of the baseline and at the end
        self.dl_seq = 0
        self.dl_lock = threading.Lock()
        self.bytes_committed = 0  # disk the downloads may use right now (held + in progress)
        self.peak_committed = 0
        self.peak_du = 0
        os.makedirs(a.out, exist_ok=True)
        os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
        self.downloads_csv = self._csv("downloads.csv", ["t_start", "t_end", "node", "file", "size", "result",
                                                         "kills_during", "stall_replies", "seconds", "message"])
        self.probes_csv = self._csv("probes.csv", ["t", "node", "file", "why", "attempt", "outcome",
                                                   "still_listed_complete"])
        self.lives_csv = self._csv("lives.csv", ["t", "node", "role", "life", "pid"])
        self.unfound_csv = self._csv("unfound.csv", ["t", "node", "file", "providers", "seeders_listed",
                                                     "answers", "seeders_up"])
        self.kills_csv = self._csv("kills.csv", ["t", "node", "role", "life_killed", "active_downloads",
                                                 "down_s", "restarted"])
        self.samples_csv = self._csv("samples.csv", ["t", "node", "role", "life", "pid", "rss_kb", "fds",
                                                     "threads", "fd_sockets", "fd_files", "fd_deleted",
                                                     "fd_other", "loadavg1"])

    def now(self):
        return time.monotonic() - self.t0

    def _csv(self, name, header):
        f = open(os.path.join(self.a.out, name), "w", newline="")
        wr = csv.writer(f)
        wr.writerow(header)
        lock = threading.Lock()

        def write(row):
            with lock:
                wr.writerow(row)
                f.flush()
        return write

    # ------------------------------------------------------------------------- set-up
    def make_catalogue(self):
        """--files files of seeded random bytes (the same bytes for the same --seed), each
        shared in place by --copies seeders."""
        src = os.path.join(self.a.work, "catalogue")
        os.makedirs(src, exist_ok=True)
        for i in range(self.a.files):
            size = min(FILE_SIZES_MIB[i % len(FILE_SIZES_MIB)], self.a.max_file_mib) * MIB
            path = os.path.join(src, f"file{i:02d}-{size // MIB}MiB.bin")
            r = random.Random(f"{self.a.seed}-{i}")
            with open(path, "wb") as f:
                left = size
                while left:
                    n = min(left, 4 * MIB)
                    f.write(r.randbytes(n))
                    left -= n
            cid, _, _ = peerwire.manifest(path)
            seeders = [(i + k * 3) % self.a.seeders for k in range(self.a.copies)]
            self.files.append({"path": path, "content_id": cid, "size": size, "sha256": sha256_file(path),
                               "seeders": sorted(set(seeders))})
        with open(os.path.join(self.a.work, "catalogue.json"), "w") as f:
            json.dump(self.files, f)
        total = sum(f["size"] for f in self.files)
        log(f"catalogue: {len(self.files)} files, {total / MIB:.0f} MiB, sizes "
            f"{', '.join(str(f['size'] // MIB) for f in self.files)} MiB, each shared by {self.a.copies} seeders")

    def start_nodes(self):
        a = self.a
        taken = set()
        ports = free_ports(2 * a.nodes, taken)
        for i in range(a.nodes):
            role = "bootstrap" if i == 0 else "seeder" if i <= a.seeders else "downloader"
            extra = {"quiet": ["-q"], "normal": [], "debug": ["-v"]}[a.node_log]
            extra += ["--down-limit", a.down_limit] if role == "downloader" else []
            self.nodes.append(Node(i, role, os.path.join(a.work, "nodes", f"n{i}"),
                                   os.path.join(a.out, "logs", f"n{i}.stderr.log"), ports[2 * i], ports[2 * i + 1],
                                   None if i == 0 else f"127.0.0.1:{ports[0]}", extra))
        if not self.nodes[0].start(self.now()):
            raise SystemExit("node 0 did not start")
        errors = []

        def start(n):
            if not n.start(self.now()):
                errors.append(n.name)
        rest = self.nodes[1:]
        for batch in range(0, len(rest), 8):  # 8 at a time: a gentle start on 2 cores
            threads = [threading.Thread(target=start, args=(n,)) for n in rest[batch:batch + 8]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if errors:
            raise SystemExit(f"nodes did not start: {errors}")
        log(f"{a.nodes} nodes up: node 0 bootstrap, {a.seeders} seeders, "
            f"{a.nodes - 1 - a.seeders} downloaders (--down-limit {a.down_limit} each)")

    def share_catalogue(self):
        seeders = [n for n in self.nodes if n.role == "seeder"]
        for f in self.files:
            for s in f["seeders"]:
                r = seeders[s].call("local_add_file", {"filepath": f["path"]}, timeout=300)
                if r.get("status") != "success" or r.get("file_hash") != f["content_id"]:
                    raise SystemExit(f"{seeders[s].name}: local_add_file {f['path']}: {r} "
                                     f"(expected content ID {f['content_id']})")

    def start_helpers(self):
        a = self.a
        liar_stats = os.path.join(a.out, "liar.json")
        self.liar = subprocess.Popen([sys.executable, os.path.join(HERE, "liar.py"),
                                      "--catalogue", os.path.join(a.work, "catalogue.json"),
                                      "--stats", liar_stats, "--identities", str(a.liars)],
                                     stdout=subprocess.PIPE, text=True,
                                     stderr=open(os.path.join(a.out, "logs", "liar.log"), "wb"))
        line = self.liar.stdout.readline().split()
        if not line or line[0] != "ready":
            raise SystemExit("the liar did not start (see logs/liar.log)")
        self.liar_addrs = line[1:]
        cfg = {"targets": [{"dht": n.listen, "api": f"127.0.0.1:{n.api_port}"} for n in self.nodes],
               "content_ids": [f["content_id"] for f in self.files],
               "udp_rate": a.udp_rate, "wire_rate": a.wire_rate, "api_rate": a.api_rate}
        with open(os.path.join(a.work, "flood.json"), "w") as f:
            json.dump(cfg, f)
        self.flooder = subprocess.Popen([sys.executable, os.path.join(HERE, "flood.py"),
                                         "--config", os.path.join(a.work, "flood.json"),
                                         "--stats", os.path.join(a.out, "flood.json")],
                                        stdout=subprocess.PIPE, text=True,
                                        stderr=open(os.path.join(a.out, "logs", "flood.log"), "wb"))
        if self.flooder.stdout.readline().strip() != "ready":
            raise SystemExit("the flooder did not start (see logs/flood.log)")
        self.helpers = [self.liar, self.flooder]
        log(f"liar listening as {len(self.liar_addrs)} peers on 127.0.0.3-10; flooder from 127.0.0.2 at "
            f"{a.udp_rate:g} datagrams/s, {a.wire_rate:g} wire and {a.api_rate:g} API connections/s")

    # ------------------------------------------------------------------------- downloads
    def downloader(self, node, slot):
        """One download slot of a node: fetch a file it does not hold, check it, repeat."""
        rnd = random.Random(f"{self.a.seed}-{node.idx}-{slot}")
        time.sleep(rnd.uniform(0, 5))  # not all at once
        while not self.stop.is_set():
            self.release_expired(node)
            busy = node.busy()
            choices = [f for f in self.files if f["content_id"] not in busy]
            if not choices:
                self.stop.wait(2)
                continue
            f = rnd.choice(choices)
            if not self.reserve_disk(f["size"]):
                self.c.add("waits_for_disk_budget")
                self.stop.wait(5)
                continue
            with node.lock:
                if f["content_id"] in node.active | set(node.held) | node.releasing:
                    self.release_disk(f["size"])
                    continue
                node.active.add(f["content_id"])
            try:
                kept = self.download(node, f, rnd)
            finally:
                with node.lock:
                    node.active.discard(f["content_id"])
                if not kept:
                    self.release_disk(f["size"])

    def reserve_disk(self, size):
        """Whether a download of SIZE bytes fits in --disk-budget (copies held and downloads
        in progress) and leaves --min-free on the file system."""
        with self.dl_lock:
            if self.bytes_committed + size > self.a.disk_budget_gib * (1 << 30):
                return False
            if shutil.disk_usage(self.a.work).free - size < self.a.min_free_gib * (1 << 30):
                return False
            self.bytes_committed += size
            self.peak_committed = max(self.peak_committed, self.bytes_committed)
            return True

    def release_disk(self, size):
        with self.dl_lock:
            self.bytes_committed -= size

    def download(self, node, f, rnd):
        """Downloads F on NODE until it is verified, failed, or the run ends; True if the copy
        is kept (it then counts against the disk budget until released)."""
        with self.dl_lock:
            self.dl_seq += 1
            out = os.path.join(self.a.work, "downloads", node.name, f"{self.dl_seq:06d}")
        os.makedirs(out, exist_ok=True)
        t_start, kills, stalls = self.now(), 0, 0
        deadline = time.monotonic() + self.a.download_timeout
        req = {"content_hash": f["content_id"], "output_dir": out, "peers": [rnd.choice(self.liar_addrs)]}
        self.c.add("downloads_started")

        def done(result, msg=""):
            self.downloads_csv([f"{t_start:.1f}", f"{self.now():.1f}", node.name, os.path.basename(f["path"]),
                                f["size"], result, kills, stalls, f"{self.now() - t_start:.1f}", msg[:300]])
            self.c.add(f"downloads_{result}")

        while True:
            if self.stop.is_set():
                done("unfinished_at_end")
                return False
            if not node.up.wait(timeout=1):
                continue
            life = node.life
            try:
                r = node.call("local_request_file", req, timeout=self.a.download_timeout)
            except (OSError, ValueError) as e:
                if self.stop.is_set():
                    continue
                if not node.up.is_set() or node.life != life:
                    kills += 1  # killed by the churn: ask again once it is back (reattach)
                    self.c.add("requests_interrupted_by_kill")
                    continue
                done("failed", f"API error without a kill: {e.__class__.__name__}: {e}")
                return False
            msg = r.get("message", "")
            if r.get("status") != "success":
                if "stalled" in msg and time.monotonic() < deadline:
                    stalls += 1  # the download goes on in the background: wait for it again
                    self.c.add("stall_replies")
                    continue
                if "stalled" in msg:
                    self.cancel(node, f)
                    done("failed", f"gave up after {self.a.download_timeout:.0f} s: {msg}")
                else:
                    done("failed", msg)
                    if msg.startswith("no peer provides"):
                        self.diagnose_unfound(node, f)
                self.stop.wait(rnd.uniform(2, 10))  # e.g. "no peer provides": try later
                return False
            path = r.get("file_path") or ""
            if msg == "File already available locally" and not os.path.exists(path):
                # The node still claims a copy deleted earlier: make it notice, then ask again.
                self.c.add("stale_claims")
                self.withdraw(node, f, "stale claim")
                continue
            try:
                ok = os.path.getsize(path) == f["size"] and sha256_file(path) == f["sha256"]
            except OSError as e:
                done("failed", f"reply names {path!r}, unreadable: {e}")
                return False
            if not ok:
                keep = os.path.join(self.a.out, "mismatches", f"{node.name}-{self.dl_seq}-{os.path.basename(path)}")
                os.makedirs(os.path.dirname(keep), exist_ok=True)
                shutil.copyfile(path, keep)
                done("mismatch", f"{path} differs from {f['path']} (copy in {keep})")
                self.c.event(f"BYTE MISMATCH: {node.name} {path} differs from {f['path']}")
                return False
            done("completed", msg)
            hold = rnd.uniform(*self.a.hold)
            with node.lock:
                node.held[f["content_id"]] = (path, time.monotonic() + hold)
            return True

    def diagnose_unfound(self, node, f):
        """Right after a download failed with "no peer provides content": what the DHT tells
        that node now (local_request_content_info), and what each provider it lists answers
        to a HANDSHAKE for the content, into unfound.csv."""
        try:
            r = node.call("local_request_content_info", {"content_hash": f["content_id"]}, timeout=60)
        except (OSError, ValueError):
            return
        peers = r.get("peers", [])
        seeders = [self.nodes[1 + s] for s in f["seeders"]]
        answers = {}
        for addr in peers:
            k = peerwire.handshake_answer(addr, f["content_id"])
            answers[k] = answers.get(k, 0) + 1
        self.unfound_csv([f"{self.now():.1f}", node.name, os.path.basename(f["path"]), len(peers),
                          sum(s.listen in peers for s in seeders),
                          " ".join(f"{k}:{v}" for k, v in sorted(answers.items())),
                          sum(s.up.is_set() for s in seeders)])

    def cancel(self, node, f):
        try:
            node.call("cancel_transfer", {"content_hash": f["content_id"]}, timeout=30)
        except (OSError, ValueError):
            pass

    def release_expired(self, node):
        """Deletes the finished copies NODE has kept long enough, and makes it withdraw them."""
        now = time.monotonic()
        with node.lock:  # claimed here, so that the node's other slots leave them alone
            expired = [(cid, p) for cid, (p, until) in node.held.items() if until <= now]
            for cid, _ in expired:
                del node.held[cid]
                node.releasing.add(cid)
        for cid, path in expired:
            f = next(x for x in self.files if x["content_id"] == cid)
            try:
                # Truncating first frees the blocks even while the node still has the file
                # open to serve it; then the name goes.
                os.truncate(path, 0)
                os.unlink(path)
            except OSError:
                pass
            self.withdraw(node, f, "release")
            with node.lock:
                node.releasing.discard(cid)
            self.release_disk(f["size"])

    def withdraw(self, node, f, why):
        """Makes NODE notice that its copy of F is gone: ask it for a chunk (peerwire.probe_
        withdrawal), then check with transfer_status that it no longer offers the content.
        Every attempt goes to probes.csv."""
        for attempt in range(1, 6):
            while not node.up.wait(timeout=1):
                if self.stop.is_set():
                    return
            t = self.now()
            outcome = peerwire.probe_withdrawal(node.listen, f["content_id"], original=f["path"])
            kind = outcome.split(":")[0]
            self.c.add(f"probe_{kind}")
            if kind == "served":
                self.c.event(f"BUG: {node.name} served a chunk of {os.path.basename(f['path'])} after its copy "
                             f"was deleted ({outcome})")
            listed = ""
            if kind in ("changed", "unknown", "served"):
                try:
                    st = node.call("transfer_status", {"content_hash": f["content_id"]}, timeout=10)
                    listed = any(x.get("complete") for x in st.get("transfers", []))
                except (OSError, ValueError) as e:
                    listed = f"? {e.__class__.__name__}"
            self.probes_csv([f"{t:.1f}", node.name, os.path.basename(f["path"]), why, attempt, outcome, listed])
            if listed is False:
                self.c.add("withdrawn")
                return
            if listed is True:
                self.c.add("withdrawal_not_visible")
            self.stop.wait(3)
        self.c.add("withdrawal_failed")

    # ------------------------------------------------------------------------- churn
    def churn(self):
        while not self.stop.wait(self.rnd.uniform(*self.a.churn)):
            victims = [n for n in self.nodes[1:] if n.up.is_set()]
            if not victims:
                continue
            n = self.rnd.choice(victims)
            with n.lock:
                active = len(n.active)
            life = n.life
            n.kill()
            self.c.add("kills")
            down = self.rnd.uniform(*self.a.downtime)
            t = self.now()
            r = threading.Thread(target=self.restart, args=(n, life, active, down, t), daemon=True)
            r.start()
            self.restarts.append(r)

    def restart(self, n, life, active, down, t_kill):
        if self.stop.wait(down):  # the run is over: it stays down
            self.kills_csv([f"{t_kill:.1f}", n.name, n.role, life, active, f"{down:.1f}", "no (run over)"])
            return
        ok = False
        for attempt in range(5):  # the port may still be held for a moment
            if self.stop.is_set():
                break
            if n.start(self.now()):
                self.lives_csv([f"{self.now():.1f}", n.name, n.role, n.life, n.proc.pid])
                ok = True
                break
            time.sleep(2)
        self.kills_csv([f"{t_kill:.1f}", n.name, n.role, life, active, f"{down:.1f}", ok])
        if not ok and not self.stop.is_set():
            self.c.event(f"RESTART FAILED: {n.name} did not start again after its kill at t={t_kill:.0f} s")

    # ------------------------------------------------------------------------- sampling
    def sampler(self):
        last_du = 0.0
        census_at = windows(self.a, self.a.minutes * 60)[0]
        while True:
            t = self.now()
            if census_at is not None and t >= census_at:  # the sockets when the baseline starts
                self.census["baseline"] = socket_census(self.nodes)
                self.census["baseline_t"] = round(t)
                census_at = None
            load = os.getloadavg()[0]
            for n in self.nodes:
                p = n.proc
                if n.up.is_set() and p and p.poll() is None:
                    s = proc_sample(p.pid)
                    if s:
                        self.samples_csv([f"{t:.1f}", n.name, n.role, n.life, p.pid, *s, f"{load:.2f}"])
            if time.monotonic() - last_du > 60:  # what the run really holds on disk
                last_du = time.monotonic()
                self.peak_du = max(self.peak_du, disk_usage(self.a.work))
            if self.stop.wait(self.a.sample):
                return

    # ------------------------------------------------------------------------- the whole run
    def run(self):
        a = self.a
        log(f"work dir {a.work}, output {a.out}")
        self.make_catalogue()
        self.free_at_start = shutil.disk_usage(a.work).free
        self.start_nodes()
        self.share_catalogue()
        self.start_helpers()
        self.t0 = time.monotonic()  # the measured run starts now
        for n in self.nodes:
            self.lives_csv(["0.0", n.name, n.role, n.life, n.proc.pid])
        threads = [threading.Thread(target=self.sampler, daemon=True),
                   threading.Thread(target=self.churn, daemon=True)]
        for n in self.nodes:
            if n.role == "downloader":
                threads += [threading.Thread(target=self.downloader, args=(n, k), daemon=True)
                            for k in range(a.slots)]
        for t in threads:
            t.start()
        end = a.minutes * 60
        while self.now() < end:
            time.sleep(min(60, end - self.now()))
            log(f"t={self.now():.0f} s: {self.c.get('downloads_completed')} downloads completed, "
                f"{self.c.get('downloads_failed')} failed, {self.c.get('downloads_mismatch')} mismatched, "
                f"{self.c.get('kills')} kills; load {os.getloadavg()[0]:.1f}")
        self.t_end = self.now()
        self.census["end"] = socket_census(self.nodes)
        with open(os.path.join(a.out, "sockets.json"), "w") as f:
            json.dump(self.census, f, indent=1)
        self.stop.set()
        threads[0].join(timeout=30)
        self.final_status = self.collect_status()
        return self.shutdown()

    def collect_status(self):
        """Every live node's `status` at the end (how much garbage reached it), with the
        addresses in its routing table counted by IP (the flooder sends from 127.0.0.2 under
        random node IDs; the real nodes are all on 127.0.0.1). Saved in final_status.json."""
        out = {}
        for n in self.nodes:
            try:
                st = n.call("status", timeout=10)
                rt = n.call("routing_table", timeout=10)
            except (OSError, ValueError):
                continue
            by_ip = {}
            for c in rt.get("contacts", []):
                ip = c.get("addr", "?").rsplit(":", 1)[0]
                by_ip[ip] = by_ip.get(ip, 0) + 1
            st["routing_table_by_ip"] = by_ip
            out[n.name] = st
        with open(os.path.join(self.a.out, "final_status.json"), "w") as f:
            json.dump(out, f, indent=1)
        return out

    def shutdown(self):
        """Stops the helpers (they save their counters on SIGTERM), then every node with
        SIGTERM: a node should stop cleanly within 10 s."""
        for p in self.helpers:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for r in self.restarts:  # a restart under way finishes (or gives up) first
            r.join()
        unclean = []
        # Nodes the churn killed last and the end of the run left down are not judged here.
        running = [n for n in self.nodes if n.proc and n.proc.poll() is None]
        self.down_at_end = [n.name for n in self.nodes if n not in running]
        for n in running:
            n.up.clear()
            n.proc.terminate()
        for n in running:
            try:
                code = n.proc.wait(10)
                if code != 0:
                    unclean.append(f"{n.name} exit status {code}")
            except subprocess.TimeoutExpired:
                unclean.append(f"{n.name} still running 10 s after SIGTERM (killed)")
                n.proc.kill()
                n.proc.wait()
        return unclean


def disk_usage(path):
    """Bytes of disk allocated under PATH (sparse files count what they use)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ----------------------------------------------------------------------------- the report

def windows(a, duration):
    """(warm-up, window): growth compares the median over [warm-up, warm-up + window) of a
    life with the median over the run's last window. The default warm-up, a third of the run
    and at most 600 s, comes from the first full run (60 nodes): the nodes' connections and
    memory rose for about 10 minutes, while the swarm filled up, and were flat after that;
    a process restarted into the running network took about 8 minutes to level off."""
    warm = a.warmup if a.warmup is not None else min(600.0, duration / 3)
    return warm, min(120.0, (duration - warm) / 3)


def read_lives(out):
    """{node: (role, [start of life 1, start of life 2, ...])} from OUT/lives.csv, written as
    each process reports ready (life 1 starts at 0: the measured run starts once all are up).
    Without that file (an output of an older harness), from samples.csv: a life starts at its
    first sample, up to one sampling period late."""
    lives = {}
    path = os.path.join(out, "lives.csv")
    if os.path.exists(path):
        with open(path) as f:
            for r in csv.DictReader(f):
                lives.setdefault(r["node"], (r["role"], []))[1].append(max(0.0, float(r["t"])))
        return lives
    with open(os.path.join(out, "samples.csv")) as f:
        for r in csv.DictReader(f):
            role, starts = lives.setdefault(r["node"], (r["role"], []))
            while len(starts) < int(r["life"]):
                starts.append(0.0 if not starts else float(r["t"]))
    return lives


def growth_table(a, out, duration):
    """Per node: baseline and end medians of each sampled figure in its last life, and growth."""
    warm, win = windows(a, duration)
    rows = {}
    with open(os.path.join(out, "samples.csv")) as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["node"], []).append(r)
    table = []
    lives = read_lives(out)
    for name in sorted(lives, key=lambda x: int(x[1:])):
        role, starts = lives[name]
        last = [r for r in rows.get(name, []) if int(r["life"]) == len(starts)]
        start = starts[-1]
        b0 = max(warm, start + warm)
        entry = {"node": name, "role": role, "lives": len(starts), "life_start": start, "checked": False}
        base = [r for r in last if b0 <= float(r["t"]) < b0 + win]
        end = [r for r in last if float(r["t"]) >= duration - win]
        if b0 + win <= duration - win and base and end:
            entry["checked"] = True
            for m in ("rss_kb", "fds", "threads", "fd_sockets", "fd_files", "fd_deleted", "fd_other"):
                bv = statistics.median(float(r[m]) for r in base)
                ev = statistics.median(float(r[m]) for r in end)
                entry[m] = (bv, ev, 100.0 * (ev - bv) / bv if bv else 0.0)
        table.append(entry)
    return table, warm, win


def growth_verdict(a, table):
    """The growth rule: for each of RSS, FDs and threads, the median growth over the checked
    nodes must stay within --max-growth, and so must node 0's (the one process that lives
    through the whole run and the whole flood). Single nodes above it are listed as warnings:
    one node's figure moves with what it happens to be doing at the end (a 64 MiB download or
    none, connections open or not)."""
    fails, warns = [], []
    checked = [e for e in table if e["checked"]]
    for m in ("rss_kb", "fds", "threads"):
        if not checked:
            break
        med = statistics.median(e[m][2] for e in checked)
        if med > a.max_growth:
            fails.append(f"{m}: median growth over {len(checked)} nodes {med:+.1f}% > {a.max_growth}%")
        n0 = next((e for e in checked if e["node"] == "n0"), None)
        if n0 and n0[m][2] > a.max_growth:
            fails.append(f"{m}: node 0 grew {n0[m][2]:+.1f}% > {a.max_growth}%")
        over = [f"{e['node']} {e[m][2]:+.1f}%" for e in checked if e[m][2] > a.max_growth and e["node"] != "n0"]
        if over:
            warns.append(f"{m}: {len(over)} of {len(checked)} nodes above {a.max_growth}%: {', '.join(over)}")
    return fails, warns


def resource_report(a, out, duration):
    """The resource part of the report, from OUT's files only (so that it can be computed
    again for a finished run with another --warmup: --growth-only). Returns (lines, fails)."""
    lines = []
    p = lines.append
    table, warm, win = growth_table(a, out, duration)
    checked = [e for e in table if e["checked"]]
    p(f"resources per node process (samples every {a.sample:g} s in samples.csv): median over "
      f"[{warm:.0f} s, {warm + win:.0f} s) of its life (after warm-up) vs median over the last {win:.0f} s; "
      f"a restarted node is compared within its last life only")
    p(f"  {'node':<5} {'role':<10} {'lives':>5}  {'RSS KiB base -> end':>24} {'growth':>7}  "
      f"{'FDs':>11} {'growth':>7}  {'threads':>9} {'growth':>7}")
    for e in table:
        if not e["checked"]:
            p(f"  {e['node']:<5} {e['role']:<10} {e['lives']:>5}  (last life began at {e['life_start']:.0f} s: "
              f"too short to compare)")
            continue
        cells = []
        for m, wd in (("rss_kb", 24), ("fds", 11), ("threads", 9)):
            b, v, g = e[m]
            flag = "!" if g > a.max_growth else " "
            cells.append(f"{f'{b:.0f} -> {v:.0f}':>{wd}} {g:+6.1f}%{flag}")
        p(f"  {e['node']:<5} {e['role']:<10} {e['lives']:>5}  " + "  ".join(cells))
    if checked:
        p(f"  over the {len(checked)} nodes compared ({len(table) - len(checked)} lived too briefly at the end):")
        for m in ("rss_kb", "fds", "threads"):
            b = [e[m][0] for e in checked]
            v = [e[m][1] for e in checked]
            g = [e[m][2] for e in checked]
            p(f"    {m:<8} base median {statistics.median(b):.0f} (max {max(b):.0f}), end median "
              f"{statistics.median(v):.0f} (max {max(v):.0f}); growth median {statistics.median(g):+.1f}%, "
              f"max {max(g):+.1f}%, min {min(g):+.1f}%")
        # Where the file descriptors are: absolute figures (a kind may start at 0).
        kinds = [(m, sum(e[m][0] for e in checked), sum(e[m][1] for e in checked))
                 for m in ("fd_sockets", "fd_files", "fd_deleted", "fd_other")]
        p("    FDs by kind, summed over these nodes, base -> end: "
          + ", ".join(f"{m[3:]} {b:.0f} -> {v:.0f}" for m, b, v in kinds))
    lines += over_time(out, table, duration, win)
    try:
        with open(os.path.join(out, "sockets.json")) as f:
            census = json.load(f)
    except (OSError, ValueError):
        census = {}
    if census.get("baseline") and census.get("end"):
        # Over the nodes never killed: the same processes at both times.
        names = {e["node"] for e in checked if e["lives"] == 1}
        tot = {}
        for when in ("baseline", "end"):
            for node, counts in census[when].items():
                if node in names:
                    for k, v in counts.items():
                        tot.setdefault(k, [0, 0])[when == "end"] += v
        p(f"  sockets by kind, summed over the {len(names)} nodes never killed, at t={census.get('baseline_t', '?')} s "
          f"-> at the end (sockets.json): " + ", ".join(f"{k} {b} -> {e}" for k, (b, e) in sorted(tot.items())))
    gfails, gwarns = growth_verdict(a, table)
    for wn in gwarns:
        p(f"  warning: {wn}")
    return lines, gfails


def over_time(out, table, duration, step):
    """A leak grows all along; a ramp-up levels off. So: per STEP seconds of the run, the
    median over the downloaders never killed of their figures (each node's median in the
    step), node 0's, and the load average."""
    never = {e["node"] for e in table if e["lives"] == 1 and e["role"] == "downloader"}
    steps = {}
    with open(os.path.join(out, "samples.csv")) as f:
        for r in csv.DictReader(f):
            if r["node"] in never or r["node"] == "n0":
                steps.setdefault(int(float(r["t"]) // step), []).append(r)
    lines = [f"  over time, per {step:.0f} s: median over the {len(never)} downloaders never killed | node 0 | load"]
    lines.append(f"    {'t (s)':>11}  {'RSS KiB':>8} {'FDs':>4} {'sockets':>7} {'files':>5} |"
                 f" {'RSS KiB':>8} {'FDs':>4} | {'load':>5}")
    for k in sorted(steps):
        per = {}
        for r in steps[k]:
            per.setdefault(r["node"], []).append(r)
        med = lambda m, names: statistics.median(statistics.median(float(r[m]) for r in per[n]) for n in names)
        dl = [n for n in per if n in never]
        if not dl:
            continue
        n0 = (f"{med('rss_kb', ['n0']):>8.0f} {med('fds', ['n0']):>4.0f}" if "n0" in per else f"{'-':>8} {'-':>4}")
        load = statistics.median(float(r["loadavg1"]) for r in steps[k])
        lines.append(f"    {k * step:>5.0f}-{min(duration, (k + 1) * step):<5.0f}  {med('rss_kb', dl):>8.0f} "
                     f"{med('fds', dl):>4.0f} {med('fd_sockets', dl):>7.0f} {med('fd_files', dl):>5.0f} | {n0} | "
                     f"{load:>5.1f}")
    return lines


def report(a, soak, unclean):
    duration = soak.t_end
    c = soak.c
    lines = []
    p = lines.append
    p("")
    p(f"=== soak report: {a.nodes} nodes, {duration / 60:.1f} min measured, seed {a.seed}")
    p(f"churn: {c.get('kills')} kills (SIGKILL, restart after {a.downtime[0]:.0f}-{a.downtime[1]:.0f} s); "
      f"{c.get('requests_interrupted_by_kill')} local_request_file calls cut by a kill and asked again")
    p(f"downloads: {c.get('downloads_started')} started, {c.get('downloads_completed')} completed and byte-identical, "
      f"{c.get('downloads_failed')} failed, {c.get('downloads_mismatch')} MISMATCHED, "
      f"{c.get('downloads_unfinished_at_end')} unfinished at the end; {c.get('stall_replies')} stall replies "
      f"(asked again); details in downloads.csv")
    with open(os.path.join(a.out, "downloads.csv")) as f:
        rows = list(csv.DictReader(f))
    done = [r for r in rows if r["result"] == "completed"]
    if done:
        mib = sum(int(r["size"]) for r in done) / MIB
        med = statistics.median(float(r["seconds"]) for r in done)
        p(f"  {mib:.0f} MiB verified in all; median download {med:.0f} s; "
          f"{sum(1 for r in done if int(r['kills_during']))} completed across a kill of their node")
    fails = {}
    for r in rows:
        if r["result"] == "failed":
            key = r["message"].split(":")[0][:90]
            fails[key] = fails.get(key, 0) + 1
    for k, v in sorted(fails.items(), key=lambda x: -x[1]):
        p(f"  failed x{v}: {k}")
    p(f"copies released: {c.get('withdrawn')} withdrawn by their node after deletion "
      f"(probe answers: changed {c.get('probe_changed')}, unknown {c.get('probe_unknown')}, timeout "
      f"{c.get('probe_timeout')}, error {c.get('probe_error')}, SERVED {c.get('probe_served')}); "
      f"{c.get('withdrawal_failed')} not withdrawn after 5 probes; {c.get('stale_claims')} stale "
      f"'already available' replies")
    p(f"disk: budget {a.disk_budget_gib} GiB, peak committed {soak.peak_committed / (1 << 30):.2f} GiB, peak measured "
      f"{soak.peak_du / (1 << 30):.2f} GiB under {a.work}; {c.get('waits_for_disk_budget')} waits for the budget")
    for name in ("liar", "flood"):
        try:
            with open(os.path.join(a.out, f"{name}.json")) as f:
                p(f"{name}: " + ", ".join(f"{k} {v}" for k, v in json.load(f).items()))
        except (OSError, ValueError):
            p(f"{name}: no counters (see logs/{name}.log)")
    st = soak.final_status.values()
    dht = lambda k: sum(s.get("dht", {}).get(k, 0) for s in st)
    p(f"nodes' own counters at the end (since their last start): DHT decode errors {dht('decode_errors')}, "
      f"rate-limited {dht('rate_limited')}, bad tokens {dht('bad_tokens')}; API refusals "
      f"{sum(s.get('api_refused', 0) for s in st)}; routing tables "
      f"{min((s.get('routing_table_size', 0) for s in st), default=0)}.."
      f"{max((s.get('routing_table_size', 0) for s in st), default=0)} contacts")
    own = [s["routing_table_by_ip"].get("127.0.0.1", 0) for s in st]
    other = [sum(v for k, v in s["routing_table_by_ip"].items() if k != "127.0.0.1") for s in st]
    if own:
        p(f"  routing table contacts at 127.0.0.1 (the real nodes) per node: median {statistics.median(own):.0f}; "
          f"at other addresses (only the flooder sends from elsewhere): median {statistics.median(other):.0f}, "
          f"max {max(other)} (final_status.json)")

    panics = []
    for n in soak.nodes:
        with open(n.log_path, errors="replace") as f:
            for line in f:
                if "panicked" in line:
                    panics.append(f"{n.name}: {line.strip()[:200]}")
    p(f"panics: {len(panics)}" + "".join(f"\n  {x}" for x in panics[:20]))
    down = f" ({', '.join(soak.down_at_end)} down at the end: killed by the churn)" if soak.down_at_end else ""
    p(f"clean stop on SIGTERM: {'all running nodes' if not unclean else '; '.join(unclean)}{down}")

    p("")
    rlines, gfails = resource_report(a, a.out, duration)
    lines += rlines

    why = []
    if panics:
        why.append(f"{len(panics)} panics in the nodes' logs")
    if c.get("downloads_mismatch"):
        why.append(f"{c.get('downloads_mismatch')} downloads differ from the original")
    if c.get("probe_served"):
        why.append(f"{c.get('probe_served')} chunks served from deleted files")
    why += [f"growth: {x}" for x in gfails]
    p("")
    p("RESULT: " + ("PASS" if not why else "FAIL: " + "; ".join(why)))
    text = "\n".join(lines)
    print(text, flush=True)
    with open(os.path.join(a.out, "report.txt"), "w") as f:
        f.write(text + "\n")
    return 1 if why else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=60)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before resources are compared (default: a third of the run, at most 600)")
    ap.add_argument("--seeders", type=int, default=8)
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--copies", type=int, default=3, help="seeders sharing each file")
    ap.add_argument("--max-file-mib", type=int, default=64)
    ap.add_argument("--slots", type=int, default=2, help="downloads at once per downloading node")
    ap.add_argument("--down-limit", default="2MB/s", help="download limit of each downloading node")
    ap.add_argument("--hold", type=parse_range, default=(30, 120),
                    help="seconds a finished copy is kept (and served) before it is deleted (default 30-120)")
    ap.add_argument("--download-timeout", type=float, default=900,
                    help="seconds after which a download still stalled is cancelled and counted failed")
    ap.add_argument("--churn", type=parse_range, default=(20, 40), help="seconds between kills (default 20-40)")
    ap.add_argument("--downtime", type=parse_range, default=(5, 30), help="seconds a killed node stays down")
    ap.add_argument("--liars", type=int, default=32, help="identities (address, node ID) of the lying peer")
    ap.add_argument("--udp-rate", type=float, default=3000, help="garbage datagrams per second, in all")
    ap.add_argument("--wire-rate", type=float, default=20, help="garbage wire connections per second")
    ap.add_argument("--api-rate", type=float, default=10, help="garbage API connections per second")
    ap.add_argument("--sample", type=float, default=10, help="seconds between resource samples")
    ap.add_argument("--max-growth", type=float, default=5.0, help="percent")
    ap.add_argument("--disk-budget-gib", type=float, default=4.0,
                    help="most GiB the downloads may hold at once (kept copies and downloads in progress)")
    ap.add_argument("--min-free-gib", type=float, default=5.0, help="never start a download below this free space")
    ap.add_argument("--node-log", choices=["quiet", "normal", "debug"], default="quiet",
                    help="the nodes' log level: -q (warnings and errors, default), the default, or -v (debug; "
                         "large: for a short run that looks into a failure)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="output folder (default target/soak/<date-time>)")
    ap.add_argument("--work", default=None, help="work folder for data dirs and files (default: a new one in /tmp)")
    ap.add_argument("--keep-work", action="store_true", help="do not delete the work folder at the end")
    ap.add_argument("--growth-only", metavar="OUT",
                    help="run nothing: compute the resource part of the report again from the files of a "
                         "finished run in OUT (with this --warmup, --minutes and --max-growth)")
    a = ap.parse_args()
    if a.growth_only:
        lines, fails = resource_report(a, a.growth_only, a.minutes * 60)
        print("\n".join(lines + ["", "growth: " + ("within the limit" if not fails else "; ".join(fails))]))
        sys.exit(1 if fails else 0)
    if a.nodes < a.seeders + 2:
        raise SystemExit("--nodes must leave room for node 0, the seeders and a downloader")
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} not found: run `make build` (make soak does)")
    a.out = os.path.abspath(a.out or os.path.join(ROOT, "target", "soak", time.strftime("%Y%m%d-%H%M%S")))
    made_work = a.work is None
    a.work = os.path.abspath(a.work or os.path.join("/tmp", f"peershare-soak-{os.getpid()}"))
    os.makedirs(a.work, exist_ok=True)
    soak = Soak(a)
    # SIGTERM or Ctrl-C: stop every process we started before leaving.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    code = 2
    try:
        unclean = soak.run()
        code = report(a, soak, unclean)
    finally:
        for p in soak.helpers:
            if p.poll() is None:
                p.kill()
        for n in soak.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
        if made_work and not a.keep_work:
            shutil.rmtree(a.work, ignore_errors=True)
        print(f"output: {a.out}", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
