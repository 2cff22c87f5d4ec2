"""The folder benchmarks of issue 16, run through tools/bench/bench.py (see tools/bench/README.md):

  python3 tools/bench/bench.py folder-pack  [--files 10000] [--size 50000] [--folders 50]
  python3 tools/bench/bench.py folder-swarm [--files 10000] [--leechers 8]
  python3 tools/bench/bench.py folder-add   [--files 10000]
  python3 tools/bench/bench.py folder-v2    [--files 10000] [--changed 5%]

The input is a pack of FILES files of SIZE random bytes each (default 10,000 x 50,000 bytes),
spread over FOLDERS folders two levels deep (`group-00/set-0/sample-00000.bin`, ...), made once
in WORK_DIR/inputs/pack-<files>x<size>-<folders>/v1/Pack and reused; folder-v2 also makes
v2-<n>/Pack there: a copy of v1 with n files (--changed of them) rewritten with new random
bytes of the same size.

folder-pack:  1 seeder -> 1 leecher: peershare (local_request_file until the reply: the whole
              tree verified and in place) against `tar c | nc` -> `nc | tar x` over loopback
              (which verifies nothing; also with every received file's SHA-256 checked against
              the sender's list afterwards, and then a syncfs; peershare's folder is placed
              before it is synced, so its time on disk is given too: a `sync -f` after the
              reply) and libtorrent with a multi-file
              torrent of the same tree. Goals: <= 1.2x tar|nc, <= 0.5x libtorrent.
folder-swarm: 1 seeder -> N leechers at once, peershare against libtorrent.
folder-add:   `local_add_file` of the folder (the API call until its reply) against
              `find DIR -type f | xargs sha256sum`, page cache warm for both. Goal <= 1.2x.
folder-v2:    a node that downloaded v1 fetches v2: the bytes it received (its `status`
              bandwidth.down_total, after minus before; also the seeder's up_total) as a share
              of v2's bytes, and the time. Goal <= 7%.

Every received tree is compared with the input byte for byte (paths, kinds, sizes, contents);
a difference fails the run loudly, and bench.py exits with status 1 at the end.
"""
import argparse
import json
import os
import random
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import tempfile
import time

import bench as B

SCENARIOS = ("folder-pack", "folder-swarm", "folder-add", "folder-v2")
PACK = "Pack"
# Every received folder that differed from its input, for the summary at the end of the run.
WRONG = []
# The sender's list of SHA-256s, and the receiver's check against it: `openssl dgst` (the fast
# hasher here, as in the single-file benches), one process per xargs batch, sorted by path.
SUMS = "find {name} -type f -print0 | xargs -0 openssl dgst -sha256 -r | LC_ALL=C sort"


# ----------------------------------------------------------------------------- inputs

def parse_fraction(text):
    t = text.strip()
    v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not a share in (0, 1] (e.g. 5% or 0.05)")
    return v


def pack_paths(files, folders):
    """The relative path of every file: FOLDERS folders two levels deep (5 sets per group),
    the files dealt round-robin over them."""
    dirs = [f"group-{j // 5:02d}/set-{j % 5}" for j in range(folders)]
    return [f"{dirs[i % folders]}/sample-{i:05d}.bin" for i in range(files)]


def write_sums(root, out):
    p = subprocess.run(["bash", "-c", "set -o pipefail; " + SUMS.format(name=shlex.quote(PACK))],
                       cwd=os.path.dirname(root), capture_output=True, text=True, check=True)
    with open(out, "w") as f:
        f.write(p.stdout)


def ensure_pack(work, files, size, folders):
    """WORK/inputs/pack-.../v1/Pack (made once, then reused) and its list of SHA-256s (SUMS)."""
    base = os.path.join(work, "inputs", f"pack-{files}x{size}-{folders}")
    root = os.path.join(base, "v1", PACK)
    done = os.path.join(base, "v1.done")
    if not os.path.exists(done):
        print(f"  (generating the pack: {files} files of {size} random bytes in {folders} folders into "
              f"{root}, once: later runs reuse it)", flush=True)
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)
        for rel in pack_paths(files, folders):
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(os.urandom(size))
        write_sums(root, os.path.join(base, "v1.sha256"))
        os.sync()  # no writeback of the input during the timed runs
        with open(done, "w") as f:
            json.dump({"files": files, "size": size, "folders": folders}, f)
    return root, os.path.join(base, "v1.sha256")


def ensure_v2(work, files, size, folders, changed):
    """v2 of the pack: a copy of v1 with CHANGED of its files (chosen with a fixed seed)
    rewritten with new random bytes of the same size. Returns (root, the changed paths)."""
    v1, _ = ensure_pack(work, files, size, folders)
    base = os.path.dirname(os.path.dirname(v1))
    n = max(1, round(changed * files))
    root = os.path.join(base, f"v2-{n}", PACK)
    done = os.path.join(base, f"v2-{n}.done")
    if not os.path.exists(done):
        print(f"  (making v2 of the pack: {n} of its {files} files changed, into {root}, once)", flush=True)
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)
        shutil.copytree(v1, root)
        changed_paths = sorted(random.Random(16).sample(pack_paths(files, folders), n))
        for rel in changed_paths:
            with open(os.path.join(root, rel), "wb") as f:
                f.write(os.urandom(size))
        os.sync()
        with open(done, "w") as f:
            json.dump({"changed": changed_paths}, f)
    with open(done) as f:
        return root, json.load(f)["changed"]


def warm_tree(root):
    """Reads every file of the tree through (page cache warm), after flushing dirty pages so
    earlier writes are not written back during the timed runs."""
    os.sync()
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb", buffering=0) as f:
                while f.read(B.MIB):
                    pass


# ----------------------------------------------------------------------------- rounds
# This machine's root file system is ext4 without a journal. There, ext4 does not reuse an inode
# freed less than 60 s ago (5 min while its inode table block is dirty) and, to skip them, looks
# at every such free inode of a block group each time it creates a file (fs/ext4/ialloc.c,
# find_inode_bit and recently_deleted): right after 10,000 files were deleted, creating 10,000
# more costs seconds of system time (a folder download's files took 0.6 s to create at best and
# 7 s right after the round before was removed; perf: ext4_create -> recently_deleted). Whoever
# follows a deletion pays it, so the rounds do not delete: a finished run folder is emptied (its
# files truncated: the blocks are freed, the inodes stay) and moved aside, and the whole lot is
# deleted when the scenario ends; a scenario starting within 65 s of such a deletion waits.

RETIRED = "retired-runs"
DELETED = ".folders-deleted"  # when the last scenario deleted its runs, and how many files


def retire(work, d):
    """Empties run folder D (its files truncated to no bytes) and moves it under WORK/RETIRED."""
    for dp, _, names in os.walk(d):
        for n in names:
            p = os.path.join(dp, n)
            try:
                if not os.path.islink(p):
                    os.truncate(p, 0)
            except OSError:
                pass
    os.makedirs(os.path.join(work, RETIRED), exist_ok=True)
    os.rename(d, os.path.join(work, RETIRED, os.path.basename(d)))


def purge(work):
    """Deletes the retired run folders, and notes when and how many files."""
    gone = os.path.join(work, RETIRED)
    if not os.path.isdir(gone):
        return
    count = sum(len(names) + len(dirs) for _, dirs, names in os.walk(gone))
    shutil.rmtree(gone, ignore_errors=True)
    os.sync()
    with open(os.path.join(work, DELETED), "w") as f:
        json.dump({"at": time.time(), "count": count}, f)


def settle(work):
    """Waits until 65 s have passed since the last scenario deleted 10,000 files or more (above).
    Even after the wait, the first system to create files pays for the deletion: the first
    peershare round of folder-pack (peershare runs first in every round) took 2.0-3.6 s with
    the leecher's CPU at 2.5-3.7 s, mostly kernel time, against 0.8-1.4 s and 1.1-1.6 s in the
    rounds after (2026-12-06; `perf` shows ext4's `recently_deleted` and buffer-cache
    lookups). Creating 10,000 empty files first took about 1 s and took the cost away after a
    deletion of 30,000 files, but not after one of 160,000. The medians of 3 rounds are
    unaffected; a single round is not a figure to go by."""
    purge(work)  # runs left by an interrupted scenario
    try:
        with open(os.path.join(work, DELETED)) as f:
            last = json.load(f)
    except (OSError, ValueError):
        return
    wait = last["at"] + 65 - time.time()
    if last["count"] >= 10000 and wait > 0:
        print(f"  (waiting {wait:.0f} s: {last['count']} files were deleted {65 - wait:.0f} s ago, and ext4 "
              f"without a journal makes creating files slow until 60 s have passed; see folders.py)", flush=True)
        time.sleep(wait)


def run_rounds(a, systems):
    """bench.run_rounds, but each run folder is retired instead of deleted, and all of them
    are deleted when the rounds end (see above)."""
    try:
        return B.run_rounds(a, systems, remove=lambda d: retire(a.work_dir, d))
    finally:
        purge(a.work_dir)


# ----------------------------------------------------------------------------- checking

def listing(root):
    """{relative path: size} of the regular files, the set of folders, and anything else."""
    files, dirs, odd = {}, set(), []
    for d, dnames, fnames in os.walk(root):
        rel = os.path.relpath(d, root)
        for n in dnames + fnames:
            r = os.path.normpath(os.path.join(rel, n))
            st = os.lstat(os.path.join(d, n))
            if stat.S_ISDIR(st.st_mode):
                dirs.add(r)
            elif stat.S_ISREG(st.st_mode):
                files[r] = st.st_size
            else:
                odd.append(r)
    return files, dirs, odd


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(B.MIB), fb.read(B.MIB)
            if x != y:
                return False
            if not x:
                return True


def compare_tree(src, dst):
    """None when DST holds exactly SRC's tree (the same folders, the same files with the same
    bytes, nothing else), else what differs, recorded in WRONG."""
    if not os.path.isdir(dst):
        return flag(dst, f"{dst} is not a folder")
    f1, d1, _ = listing(src)
    f2, d2, odd = listing(dst)
    missing = sorted(set(f1) - set(f2)) + sorted(d1 - d2)
    extra = sorted(set(f2) - set(f1)) + sorted(d2 - d1) + odd
    differ = [p for p in sorted(set(f1) & set(f2))
              if f1[p] != f2[p] or not same_bytes(os.path.join(src, p), os.path.join(dst, p))]
    if not (missing or extra or differ):
        return None
    some = lambda xs: ", ".join(xs[:3]) + (", ..." if len(xs) > 3 else "")
    parts = [f"{len(differ)} of {len(f1)} files have other bytes ({some(differ)})" if differ else "",
             f"{len(missing)} missing ({some(missing)})" if missing else "",
             f"{len(extra)} not in the input ({some(extra)})" if extra else ""]
    return flag(dst, "; ".join(p for p in parts if p))


def flag(dst, what):
    msg = f"WRONG BYTES in {dst}: {what}"
    WRONG.append(msg)
    print(f"  *** {msg} ***", flush=True)
    return msg


def identical(res, n_files):
    return f"  all {n_files} files identical" if res.get("ok") else ""


# ----------------------------------------------------------------------------- tar | nc

def listening(port):
    """Whether something listens on 127.0.0.1:PORT (TCP), from /proc/net/tcp."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == want and line.split()[3] == "0A" for line in list(f)[1:])


def kill_group(p):
    if p is not None and p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def tar_nc(run_dir, root, sums, mode, timeout):
    """`tar c | nc` -> `nc -l | tar x` on 127.0.0.1, the receiver listening before the clock
    starts; the time runs from the sender's start to the receiver's end. MODE `plain` (no
    check at all), `sha256` (then every received file's SHA-256 against the sender's list
    SUMS, openssl) or `sha256+sync` (then a syncfs of the output's file system: on disk, as
    peershare's folder is after its own `sync -f`). The tree is compared with ROOT afterwards, untimed."""
    res = {"time": None, "ok": False}
    out = os.path.join(run_dir, "out")
    os.makedirs(out)
    port = B.free_port()
    q = shlex.quote
    recv = f"nc -l 127.0.0.1 {port} </dev/null | tar x -C {q(out)}"
    if mode != "plain":
        recv += f" && cd {q(out)} && {SUMS.format(name=q(PACK))} | cmp -s - {q(sums)}"
    if mode == "sha256+sync":
        recv += " && sync -f ."
    send = f"tar c -C {q(os.path.dirname(root))} {q(PACK)} | nc -N 127.0.0.1 {port}"
    sh = lambda cmd: subprocess.Popen(["bash", "-c", "set -o pipefail; " + cmd], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
    r = s = None
    try:
        r = sh(recv)
        deadline = time.time() + 10
        while not listening(port):
            if r.poll() is not None or time.time() > deadline:
                res["error"] = f"nc -l did not listen: {r.stderr.read().strip()[-200:] if r.poll() is not None else 'timeout'}"
                return res
            time.sleep(0.005)
        t0 = time.perf_counter()
        s = sh(send)
        try:
            r.wait(timeout)
        except subprocess.TimeoutExpired:
            res["error"] = f"the receiver did not finish within {timeout:.0f} s"
            return res
        res["time"] = time.perf_counter() - t0
        try:
            s.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if r.returncode != 0:
            what = "the SHA-256 check found a difference" if mode != "plain" else "receiver failed"
            res["error"] = f"{what} (exit {r.returncode}): {r.stderr.read().strip()[-200:]}"
            compare_tree(root, os.path.join(out, PACK))
            return res
        wrong = compare_tree(root, os.path.join(out, PACK))
        if wrong:
            res["error"] = wrong
            return res
        res["ok"] = True
        return res
    finally:
        kill_group(s)
        kill_group(r)


# ----------------------------------------------------------------------------- scenarios

def header(a, what, extra=""):
    B.print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    root, sums = ensure_pack(a.work_dir, a.files, a.size, a.folders)
    total = a.files * a.size
    print(f"{what}: a pack of {a.files} files x {a.size} B = {total / 1e6:.1f} MB ({total / B.MIB:.1f} MiB) "
          f"of random bytes in {a.folders} folders, {extra}{a.repeat} rounds", flush=True)
    return root, sums, total


def lt_args(a):
    return ["--torrent", a.lt_torrent]


def on_disk(r):
    """When the folder was on disk: the harness's `sync -f` after the reply returned."""
    d = r.get("durable")
    return "" if d is None or r.get("time") is None else f"; on disk (a `sync -f` after the reply) at {d:.2f} s"


def lt_note(r):
    t = r.get("torrent") or {}
    return (f"; create_torrent (hash) {r['add_s']:.2f} s; {t.get('format')} torrent: {t.get('pieces')} pieces "
            f"of 1 MiB, {t.get('files')} files ({t.get('pad_files')} pad files)")


def timeout_for(a, total, leechers=1):
    return a.timeout or 120 + leechers * total / (10 * B.MIB)


def bench_pack(a):
    root, sums, total = header(a, "folder-pack", "1 seeder -> 1 leecher on 127.0.0.1, time from the request "
                               "to the tree complete (peershare: verified and in place), ")
    timeout = timeout_for(a, total)
    warm_tree(root)
    check = lambda path: compare_tree(root, path)
    settle(a.work_dir)
    load = B.Load()
    res = run_rounds(a, [
        ("peershare", lambda d: B.ps_transfer(d, root, None, 1, a.hints, timeout, verify=check,
                                              durable=True)),
        ("libtorrent", lambda d: B.lt_transfer(d, root, None, 1, a.lt_settings, timeout, verify=check,
                                               lt_args=lt_args(a))),
        ("tar|nc", lambda d: tar_nc(d, root, sums, "plain", timeout)),
        ("tar|nc+sha256", lambda d: tar_nc(d, root, sums, "sha256", timeout)),
        ("tar|nc+sha256+sync", lambda d: tar_nc(d, root, sums, "sha256+sync", timeout)),
    ])
    n = a.files
    B.line("peershare", total, res["peershare"], lambda r: (
        f"{identical(r, n)}{B.split(r)}{on_disk(r)}{B.cpu_note(r)}; add (hash) {r['add_s']:.2f} s; leecher peak RSS "
        f"{r['rss_mib'][0]:.1f} MiB (seeder {r['seed_rss_mib']:.1f} MiB); "
        f"{B.HINTS['seeder' if a.hints == 'all' else a.hints]}"))
    B.line(f"libtorrent ({a.lt_settings})", total, res["libtorrent"], lambda r: f"{identical(r, n)}{lt_note(r)}")
    B.line("tar c | nc -> nc | tar x", total, res["tar|nc"], lambda r: (
        f"{identical(r, n)} (checked afterwards, untimed: tar and nc verify nothing)"))
    B.line("tar|nc, then sha256 each", total, res["tar|nc+sha256"], lambda r: (
        f"{identical(r, n)}; every received file's SHA-256 (openssl) checked against the sender's list "
        f"after the extraction, in the time"))
    B.line("tar|nc, sha256, syncfs", total, res["tar|nc+sha256+sync"], lambda r: (
        f"{identical(r, n)}; the same, then `sync -f` (syncfs: on disk, as peershare's folder is "
        f"at its `sync -f`)"))
    B.ratio("peershare / tar|nc", res, "peershare", "tar|nc", 1.2)
    B.ratio("peershare / libtorrent", res, "peershare", "libtorrent", 0.5)
    B.ratio("peershare / (tar|nc, sha256 each)", res, "peershare", "tar|nc+sha256", None)
    B.ratio("peershare / (tar|nc, sha256, syncfs)", res, "peershare", "tar|nc+sha256+sync", None)
    durable = {"peershare on disk": [dict(r, time=r.get("durable")) for r in res["peershare"]],
               "tar|nc+sha256+sync": res["tar|nc+sha256+sync"]}
    B.ratio("peershare on disk / (tar|nc, sha256, syncfs)", durable, "peershare on disk",
            "tar|nc+sha256+sync", None)
    print(f"  {load.report()}", flush=True)


def bench_swarm(a):
    n = a.leechers
    root, _, total = header(a, "folder-swarm", f"1 seeder -> {n} leechers at once on 127.0.0.1, nothing "
                            f"throttled, time until all are complete, ")
    timeout = timeout_for(a, total, n)
    warm_tree(root)
    check = lambda path: compare_tree(root, path)
    settle(a.work_dir)
    load = B.Load()
    res = run_rounds(a, [
        ("peershare", lambda d: B.ps_transfer(d, root, None, n, a.hints, timeout, verify=check)),
        ("libtorrent", lambda d: B.lt_transfer(d, root, None, n, a.lt_settings, timeout, verify=check,
                                               lt_args=lt_args(a))),
    ])
    each = lambda r: f"  each {min(r['times']):.2f}..{max(r['times']):.2f} s"
    B.line("peershare", n * total, res["peershare"], lambda r: (
        f"{each(r)}; all {n} trees identical{B.cpu_note(r)}; seeder sent "
        f"{sum(r['seed_up']) / total:.2f} copies; leecher peak RSS max {max(r['rss_mib']):.1f} MiB "
        f"(seeder {r['seed_rss_mib']:.1f} MiB); {B.HINTS[a.hints]}"))
    B.line(f"libtorrent ({a.lt_settings})", n * total, res["libtorrent"], lambda r: (
        f"{each(r)}; all {n} trees identical; seeder sent {sum(r['seed_up']) / total:.2f} copies{lt_note(r)}"))
    print("  (MiB/s here is the aggregate: all leechers' bytes / time until the last completes)")
    B.ratio("peershare / libtorrent", res, "peershare", "libtorrent", None)
    print("  (issue 16 sets no goal for this one; the single-file swarm's is <= 0.5)")
    print(f"  {load.report()}", flush=True)


def ps_add(run_dir, root, files, timeout):
    """A fresh node shares the folder: `local_add_file` from the request sent to the reply."""
    res = {"time": None, "ok": False}
    node = B.Node(run_dir, "seed", [], log=True)
    try:
        res["time"], r = B.timed_add(node, root, timeout, os.path.dirname(run_dir))
        if res["time"] is None:
            res["error"] = r
        elif r.get("status") != "success" or r.get("message") != "Folder added":
            res["error"] = f"local_add_file failed: {r}"
        elif r.get("num_files") != files or r.get("skipped"):
            res["error"] = f"the reply does not count {files} files and nothing skipped: {r}"
        else:
            res.update(ok=True, chunks=r.get("num_chunks"), rss_mib=B.vm_hwm_mib(node.p.pid))
        return res
    finally:
        node.stop()


def shell_round(cmd):
    t, p = B.timed_shell(cmd)
    if p.returncode != 0:
        return {"time": None, "ok": False, "error": f"`{cmd}` failed: {p.stderr.strip()[-200:]}"}
    return {"time": t, "ok": True}


def lt_hash(run_dir, root, a, timeout):
    """libtorrent's create_torrent + set_piece_hashes of the tree (lt_anchor.py --leechers 0)."""
    cmd = [B.LT_PYTHON, os.path.join(B.HERE, "lt_anchor.py"), root, os.path.join(run_dir, "lt"),
           "--leechers", "0"] + lt_args(a)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"time": None, "ok": False, "error": f"lt_anchor.py failed (exit {p.returncode}): {p.stderr[-300:]}"}
    return {"time": out["hash_s"], "ok": True, "torrent": out["torrent"]}


def bench_add(a):
    root, _, total = header(a, "folder-add", "hashed in place on this machine, page cache warm for every "
                            "system (the tree is read through before the rounds, and stays cached), ")
    timeout = timeout_for(a, total)
    warm_tree(root)
    q = shlex.quote(root)
    cpus = os.cpu_count()
    settle(a.work_dir)
    load = B.Load()
    res = run_rounds(a, [
        ("peershare", lambda d: ps_add(d, root, a.files, timeout)),
        ("sha256sum", lambda d: shell_round(f"find {q} -type f | xargs sha256sum >/dev/null")),
        ("sha256sum-P", lambda d: shell_round(
            f"find {q} -type f | xargs -P {cpus} -n {max(1, a.files // (4 * cpus))} sha256sum >/dev/null")),
        ("openssl", lambda d: shell_round(f"find {q} -type f | xargs openssl dgst -sha256 >/dev/null")),
        ("libtorrent", lambda d: lt_hash(d, root, a, timeout)),
    ])
    B.line("peershare add (API)", total, res["peershare"], lambda r: (
        f"  {a.files} files, nothing skipped, {r['chunks']} chunks; node peak RSS {r['rss_mib']:.1f} MiB; "
        f"local_add_file on a fresh node, request to reply"))
    B.line("find | xargs sha256sum", total, res["sha256sum"], lambda r: "  coreutils, one process at a time")
    B.line(f"the same, xargs -P {cpus}", total, res["sha256sum-P"], lambda r: (
        f"  {cpus} sha256sum at once (peershare hashes on {cpus} workers here), for reference"))
    B.line("find | xargs openssl", total, res["openssl"], lambda r: "  openssl dgst -sha256 (SHA-NI), for reference")
    B.line("lt create_torrent", total, res["libtorrent"], lambda r: (
        f"  create_torrent + set_piece_hashes, {r['torrent']['format']} torrent, for reference"))
    B.ratio("peershare add / (find | xargs sha256sum)", res, "peershare", "sha256sum", 1.2)
    B.ratio(f"peershare add / (xargs -P {cpus} sha256sum)", res, "peershare", "sha256sum-P", None)
    B.ratio("peershare add / (find | xargs openssl)", res, "peershare", "openssl", None)
    print(f"  {load.report()}", flush=True)


def ps_v2(run_dir, v1, v2, timeout):
    """One round of folder-v2: a seeder shares v1 and v2; leecher `has` downloads v1, then v2
    (timed, with the wire bytes it received and the seeder sent meanwhile); then a fresh leecher
    downloads v2, for reference."""
    res = {"time": None, "ok": False}
    nodes = []

    def get(node, cid, out, what):
        os.makedirs(out)
        t = time.perf_counter()
        try:
            r = node.call("local_request_file", {"content_hash": cid, "output_dir": out,
                                                 "peers": [seed.listen]}, timeout=timeout)
        except (OSError, ValueError) as e:
            r = {"status": "error", "message": f"no reply within {timeout:.0f} s: {e.__class__.__name__}"}
        dt = time.perf_counter() - t
        if r.get("status") != "success":
            raise RuntimeError(f"{what}: {r.get('message', r)}; "
                               f"{B.diagnose(node, what.replace(' ', '-'), os.path.dirname(run_dir))}; "
                               f"log: {B.tail(os.path.join(node.dir, 'stderr.log'))}")
        path = r.get("file_path") or os.path.join(out, r.get("filename", ""))
        return dt, path, r

    def counters():
        return (has.call("status", timeout=5)["bandwidth"]["down_total"],
                seed.call("status", timeout=5)["bandwidth"]["up_total"])

    try:
        seed = B.Node(run_dir, "seed", [], log=True)
        nodes.append(seed)
        cids = []
        for root in (v1, v2):
            r = seed.call("local_add_file", {"filepath": root}, timeout=timeout)
            if r.get("status") != "success":
                res["error"] = f"local_add_file {root} failed: {r}"
                return res
            cids.append(r["file_hash"])
        has = B.Node(run_dir, "has-v1", ["--bootstrap", seed.listen], log=True)
        fresh = B.Node(run_dir, "fresh", ["--bootstrap", seed.listen], log=True)
        nodes += [has, fresh]
        try:
            res["v1_time"], path, _ = get(has, cids[0], os.path.join(run_dir, "out-v1"), "v1 download")
            if compare_tree(v1, path):
                res["error"] = f"v1 as downloaded differs from the input: {path}"
                return res
            d0, u0 = counters()
            res["time"], path, reply = get(has, cids[1], os.path.join(run_dir, "out-v2"), "v2 download")
            d1, u1 = counters()
            res.update(down=d1 - d0, up=u1 - u0, message=reply.get("message"))
            wrong = compare_tree(v2, path)
            if wrong:
                res["error"] = f"v2 on the node with v1: {wrong}"
                return res
            d0 = fresh.call("status", timeout=5)["bandwidth"]["down_total"]
            res["fresh_time"], path, _ = get(fresh, cids[1], os.path.join(run_dir, "out-fresh"), "fresh v2 download")
            res["fresh_down"] = fresh.call("status", timeout=5)["bandwidth"]["down_total"] - d0
            wrong = compare_tree(v2, path)
            if wrong:
                res["error"] = f"v2 on a fresh node: {wrong}"
                return res
        except RuntimeError as e:
            res["error"] = str(e)
            return res
        res["ok"] = True
        return res
    finally:
        for n in nodes:
            n.stop()


def spread(xs, fmt):
    xs = sorted(xs)
    med = statistics.median(xs)
    return fmt(med) + ("" if len(xs) < 2 else f" (min {fmt(xs[0])}, max {fmt(xs[-1])})")


def bench_v2(a):
    B.print_versions()
    os.makedirs(a.work_dir, exist_ok=True)
    v1, _ = ensure_pack(a.work_dir, a.files, a.size, a.folders)
    v2, changed = ensure_v2(a.work_dir, a.files, a.size, a.folders, a.changed)
    total = a.files * a.size
    floor = len(changed) * a.size
    timeout = timeout_for(a, total)
    print(f"folder-v2: a pack of {a.files} files x {a.size} B = {total / 1e6:.1f} MB in {a.folders} folders; "
          f"v2 has {len(changed)} of them changed ({100 * floor / total:.2f}% of its bytes: the least any "
          f"download of v2 must fetch), the same paths and sizes. 1 seeder shares v1 and v2; a leecher "
          f"downloads v1 (setup), then v2 (measured); then a fresh leecher downloads v2 (reference). "
          f"{a.repeat} rounds", flush=True)
    warm_tree(v1)
    warm_tree(v2)
    settle(a.work_dir)
    load = B.Load()
    runs = run_rounds(a, [("peershare", lambda d: ps_v2(d, v1, v2, timeout))])["peershare"]
    bad = [r for r in runs if not r["ok"]]
    if bad or not runs:
        print(f"  peershare v2: FAILED {len(bad)}/{len(runs)} runs: {bad[0].get('error', '?') if bad else 'not run'}")
        print(f"  {load.report()}", flush=True)
        return
    pct = lambda x: f"{x:.2f}%"
    sec = lambda x: f"{x:.2f} s"
    fetched = [100 * r["down"] / total for r in runs]
    print(f"  {'v2 on the node with v1':<26} fetched {spread(fetched, pct)} of v2's bytes (goal <= 7%; leecher "
          f"down_total, wire bytes), time {spread([r['time'] for r in runs], sec)}; seeder sent "
          f"{spread([100 * r['up'] / total for r in runs], pct)}; all files identical; reply: {runs[0]['message']!r}")
    print(f"  {'v2 on a fresh node':<26} fetched {spread([100 * r['fresh_down'] / total for r in runs], pct)}, "
          f"time {spread([r['fresh_time'] for r in runs], sec)}; all files identical (reference: no v1 there)")
    print(f"  {'v1 on that node (setup)':<26} time {spread([r['v1_time'] for r in runs], sec)}")
    med = statistics.median(fetched)
    print(f"  fetched / goal: {med:.2f}% {'<=' if med <= 7 else 'ABOVE'} 7%; the changed files alone are "
          f"{100 * floor / total:.2f}%; time with v1 / fresh = "
          f"{statistics.median(r['time'] for r in runs) / statistics.median(r['fresh_time'] for r in runs):.2f}",
          flush=True)
    print(f"  {load.report()}", flush=True)


# ----------------------------------------------------------------------------- wiring

def add_parsers(sub, common):
    """The folder scenarios' subcommands, with bench.py's common options (COMMON)."""
    pack = argparse.ArgumentParser(add_help=False, parents=[common])
    pack.add_argument("--files", type=int, default=10000, help="files in the pack (default 10000)")
    pack.add_argument("--size", type=B.parse_size, default=50000,
                      help="bytes per file (default 50000; K and M suffixes are KiB and MiB)")
    pack.add_argument("--folders", type=int, default=50, help="folders the files are dealt over (default 50)")
    pack.add_argument("--lt-torrent", choices=["v1", "hybrid"], default="v1",
                      help="libtorrent's torrent format: v1 (no padding; default, the faster here) or "
                           "hybrid (libtorrent 2.0's default: every file padded to a piece)")
    sub.add_parser("folder-pack", parents=[pack], help="a folder, 1 seeder -> 1 leecher, vs tar|nc and libtorrent")
    s = sub.add_parser("folder-swarm", parents=[pack], help="a folder, 1 seeder -> N leechers, vs libtorrent")
    s.add_argument("--leechers", type=int, default=8)
    sub.add_parser("folder-add", parents=[pack], help="sharing a folder vs find | xargs sha256sum")
    v = sub.add_parser("folder-v2", parents=[pack], help="v2 of a pack on a node with v1: bytes fetched")
    v.add_argument("--changed", type=parse_fraction, default=0.05,
                   help="share of the files changed in v2 (default 5%%)")


def run(a):
    {"folder-pack": bench_pack, "folder-swarm": bench_swarm, "folder-add": bench_add,
     "folder-v2": bench_v2}[a.what](a)


if __name__ == "__main__":
    raise SystemExit("run the folder scenarios through bench.py: python3 tools/bench/bench.py folder-pack ...")
