#!/usr/bin/env python3
"""Runs the README's quickstart, as written, many times in a row, and checks every run.

  python3 tools/quickstart/check.py [--runs 100] [--keep-going]     (make quickstart-check)

The commands come from the README itself (the first ```sh block under "## Quickstart"), so
the README cannot drift from what the program does without this failing. Each run happens in
a fresh folder with a fresh `song.wav` of random bytes (the user's own file in the README):
`cargo build --release` is left out (this script builds once, before the first run, or takes
`--bin`), the README's `/tmp/ps` data dirs become a fresh folder per run, and
`./target/release/peershare` is the binary. Ports are the README's own (4001-4003, 5001-5003).

A run is clean when: every command exits 0 and the three nodes are still running at the end;
`add` printed a 64-hex ID then a share link; `peers` named the sharing node (port 4002: at
127.0.0.1, or at this machine's LAN address when the nodes also found each other by LAN
discovery, protocol-spec/nat.md section 11);
`get` produced a byte-identical ./downloads/song.wav; `ls` listed the ID; `status` answered;
nothing anywhere mentions a panic, and no client wrote to stderr; and each node stops on
SIGTERM with exit status 0. A failed run prints its whole transcript and the nodes' logs.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
PORTS = (4001, 4002, 4003, 5001, 5002, 5003)


def quickstart_block(readme_text):
    """The first ```sh block after the '## Quickstart' heading, as a list of lines."""
    m = re.search(r"^## Quickstart[^\n]*\n(.*?)^```sh\n(.*?)^```", readme_text, re.S | re.M)
    if not m:
        raise SystemExit("README.md has no ```sh block under a '## Quickstart' heading")
    return m.group(2).splitlines()


def script_for(lines, work):
    """The README's lines made to run unattended in `work`; node logs go to files."""
    out = ["set -e", "cd " + sh_quote(work)]
    node = 0
    for line in lines:
        if line.strip().startswith("cargo build"):
            continue  # built once before the runs
        line = line.replace("/tmp/ps/", work + "/ps/")
        if re.search(r"\brun\b.*&\s*(#.*)?$", line):
            # A node in the background: its output to a file, its pid kept.
            cmd = re.sub(r"&\s*(#.*)?$", "", line).rstrip()
            out.append(f"{cmd} >node{node}.out 2>node{node}.err &")
            out.append(f"echo $! > node{node}.pid")
            node += 1
        else:
            out.append(line)
    # What the checks need after the block: the ID it computed.
    out.append('echo "QUICKSTART_ID=$ID"')
    return "\n".join(out) + "\n", node


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def ports_free():
    import socket
    for p in PORTS:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
            except OSError:
                return p
            finally:
                s.close()
    return None


def wait_ports_free(timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        busy = ports_free()
        if busy is None:
            return None
        time.sleep(0.2)
    return busy


def one_run(n, lines, binary):
    """Runs the quickstart once; returns (ok, problems, transcript)."""
    problems = []
    work = tempfile.mkdtemp(prefix=f"peershare-quickstart-{n}.")
    try:
        busy = wait_ports_free()
        if busy is not None:
            return False, [f"port {busy} still taken 30 s after the previous run"], ""
        os.makedirs(os.path.join(work, "target", "release"), exist_ok=True)
        os.symlink(binary, os.path.join(work, "target", "release", "peershare"))
        song = os.urandom(1_000_000 + (n * 7919) % 4_000_000)
        with open(os.path.join(work, "song.wav"), "wb") as f:
            f.write(song)
        script, nodes = script_for(lines, work)
        with open(os.path.join(work, "quickstart.sh"), "w") as f:
            f.write(script)
        try:
            p = subprocess.run(["bash", os.path.join(work, "quickstart.sh")], cwd=work,
                               capture_output=True, text=True, timeout=180,
                               stdin=subprocess.DEVNULL)
            stdout, stderr, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            stdout, stderr, rc = (e.stdout or b"").decode(), (e.stderr or b"").decode(), "timeout"
        transcript = f"--- script\n{script}--- stdout\n{stdout}--- stderr\n{stderr}--- exit {rc}\n"
        if rc != 0:
            problems.append(f"the script exited {rc}")
        if stderr.strip():
            problems.append("a client wrote to stderr")
        m = re.search(r"^QUICKSTART_ID=([0-9a-f]*)$", stdout, re.M)
        qid = m.group(1) if m else ""
        if not re.fullmatch(r"[0-9a-f]{64}", qid):
            problems.append(f"add did not print a 64-hex ID first (got {qid!r})")
        if qid and f"peershare:{qid}" in stdout:
            problems.append("the share link leaked into $ID")
        if not re.search(r"^\S+:4002$", stdout, re.M):
            problems.append("peers did not name the sharing node (port 4002)")
        got = os.path.join(work, "downloads", "song.wav")
        if not os.path.exists(got):
            problems.append("./downloads/song.wav was not created")
        elif hashlib.sha256(open(got, "rb").read()).digest() != hashlib.sha256(song).digest():
            problems.append("./downloads/song.wav differs from song.wav")
        if qid and stdout.count(qid) < 2:
            problems.append("ls did not list the ID")
        if not re.search(r"^node id +[0-9a-f]{64}$", stdout, re.M):
            problems.append("status did not show the node ID")
        # Every node still running, then each stops cleanly on SIGTERM.
        for i in range(nodes):
            try:
                pid = int(open(os.path.join(work, f"node{i}.pid")).read())
            except (OSError, ValueError):
                problems.append(f"node {i} never started")
                continue
            if not alive(pid):
                problems.append(f"node {i} was not running at the end")
                continue
            os.kill(pid, signal.SIGTERM)
        for i in range(nodes):
            try:
                pid = int(open(os.path.join(work, f"node{i}.pid")).read())
            except (OSError, ValueError):
                continue
            status = reap(pid, 20)
            if status is None:
                problems.append(f"node {i} did not stop within 20 s of SIGTERM")
                os.kill(pid, signal.SIGKILL)
            elif status != 0:
                problems.append(f"node {i} stopped with status {status}")
        for i in range(nodes):
            for ext in ("out", "err"):
                path = os.path.join(work, f"node{i}.{ext}")
                text = open(path, errors="replace").read() if os.path.exists(path) else ""
                transcript += f"--- node{i}.{ext}\n{text}"
                if "panicked" in text:
                    problems.append(f"node {i} panicked")
        if "panicked" in stdout + stderr:
            problems.append("a client panicked")
        return not problems, problems, transcript
    finally:
        shutil.rmtree(work, ignore_errors=True)


def alive(pid):
    """True while `pid` runs (a zombie, already exited, counts as not running)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reap(pid, timeout):
    """Exit status of a node the script started in the background (bash has exited, so the
    node was re-parented to init or to us as a subreaper): poll until it is gone."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            if not alive(pid):
                return 0 if not os.path.exists(f"/proc/{pid}") else None
        time.sleep(0.05)
    return None


def become_subreaper():
    """Orphaned nodes get re-parented to us, so their exit status can be read."""
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--keep-going", action="store_true", help="go on after a failed run")
    ap.add_argument("--bin", help="the peershare binary to run as ./target/release/peershare "
                    "(default: build the release binary and use it)")
    a = ap.parse_args()
    if not become_subreaper():
        print("note: could not become a child subreaper; node exit statuses are not checked",
              file=sys.stderr)
    if a.bin:
        binary = os.path.abspath(a.bin)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
        binary = os.path.abspath(os.path.join(target_dir, "release", "peershare"))
    lines = quickstart_block(open(README).read())
    clean = 0
    t0 = time.monotonic()
    for n in range(1, a.runs + 1):
        started = time.monotonic()
        ok, problems, transcript = one_run(n, lines, binary)
        took = time.monotonic() - started
        if ok:
            clean += 1
            print(f"run {n}/{a.runs}: clean ({took:.1f} s)", flush=True)
            continue
        print(f"run {n}/{a.runs}: FAILED ({took:.1f} s): " + "; ".join(problems), flush=True)
        print(transcript, flush=True)
        if not a.keep_going:
            break
    runs = n
    print(f"quickstart: {clean} of {runs} runs clean in a row" if clean == runs
          else f"quickstart: {clean} of {runs} runs clean", flush=True)
    print(f"({time.monotonic() - t0:.0f} s in all)")
    sys.exit(0 if clean == a.runs else 1)


if __name__ == "__main__":
    main()
