#!/usr/bin/env python3
"""The shape of the source tree, checked (run by tools/check-boundaries.sh, `make test`).

1. Sans-IO cores do no I/O: src/proto, src/dht, src/transfer, src/nat, src/node_core, src/secure and src/web use
   no sockets, event loop, threads, channels, locks, files or real clock. This keeps them
   testable by the deterministic simulators and readable as teaching material. The
   simulators (src/sim) may read the wall clock (for run time) but never a socket, and only
   src/sim/parallel.rs uses threads (SIM_THREADS): shards of nodes run side by side in
   windows of virtual time, with the same result as on one thread.
2. Layers: each top-level module may use only modules of lower layers (LAYERS below), so
   there is no import cycle between top-level modules and, for instance, the cores never
   reach into `net` or `node`, and `net` never into `node` or `cli`.
3. Narrow doors: the cores use only the storage's job vocabulary (`storage::job`), never the
   disk executor.
4. Size: no source file has more than MAX_LINES lines outside its tests (comments count:
   a reader reads them too).

Only code outside `#[cfg(test)]` items and outside comments is checked: tests may use real
time, threads and sockets for their harness.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# Lower layers first; a module may use modules of strictly lower layers only.
LAYERS = [
    ["id", "conn", "bitset", "bufpool", "limits", "paths", "workers", "capture"],
    ["proto", "settings", "identity"],
    ["content", "secure"],
    ["explain", "ledger"],
    ["api"],
    ["storage"],
    ["dht", "nat", "transfer"],
    ["node_core"],
    ["web"],
    ["sim", "net"],
    ["node", "conform"],
    ["cli"],
]
LAYER = {m: i for i, ms in enumerate(LAYERS) for m in ms}

CORES = ["capture", "proto", "dht", "transfer", "nat", "node_core", "secure", "web"]
IO = (r"\bmio\b|crossbeam|parking_lot|std::net::(UdpSocket|TcpStream|TcpListener)"
      r"|Instant::now\(\)|SystemTime::now\(\)|std::thread|thread_rng|rand::random"
      r"|std::fs\b|\bFile::(open|create)|std::process")
SIM_IO = r"\bmio\b|crossbeam|parking_lot|std::net::(UdpSocket|TcpStream|TcpListener)|std::thread"
NARROW = {"storage": "crate::storage::job"}
# The one simulator file that may start threads (scoped, deterministic: see its docs).
SIM_THREADS = "src/sim/parallel.rs"
MAX_LINES = 800
# Files past the limit, each with its non-test size when it was listed: they may not grow,
# and leave this list when split. None is listed now (src/dht/mod.rs, the last, was split).
GRANDFATHERED = {}


def split_tests(path):
    """(line number, text) of every line outside #[cfg(test)] items. A test module at the
    top level ends at its closing `}` in column 0 (rustfmt's layout); other test items end
    where their braces balance."""
    lines = path.read_text().splitlines()
    out = []
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s == "#[cfg(test)]":
            top = not lines[i].startswith((" ", "\t"))
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("#["):
                j += 1
            nxt = lines[j].strip() if j < len(lines) else ""
            if re.match(r"(pub(\(crate\))? )?mod \w+;", nxt):
                i = j + 1
                continue
            if top and re.match(r"(pub(\(crate\))? )?mod \w+ \{", nxt):
                while j < len(lines) and lines[j] != "}":
                    j += 1
                i = j + 1
                continue
            depth, seen = 0, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                seen = seen or "{" in lines[j]
                j += 1
                if seen and depth <= 0:
                    break
            i = j
            continue
        out.append((i + 1, lines[i]))
        i += 1
    return out


def code_lines(path):
    """Lines outside tests, without comment lines (for the pattern checks)."""
    return [(n, t) for n, t in split_tests(path) if not t.strip().startswith("//")]


def module_of(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def main():
    errors = []
    files = sorted(p for p in SRC.rglob("*.rs") if p.name != "tests.rs")
    for f in files:
        m = module_of(f)
        rel = f.relative_to(ROOT)
        code = code_lines(f)
        if m in CORES:
            for n, t in code:
                if re.search(IO, t):
                    errors.append(f"{rel}:{n}: I/O or real clock in a sans-IO core: {t.strip()}")
        if m == "sim":
            for n, t in code:
                if str(rel) == SIM_THREADS and re.search(r"std::thread", t) and not re.search(
                    SIM_IO.replace("|std::thread", ""), t
                ):
                    continue
                if re.search(SIM_IO, t):
                    errors.append(f"{rel}:{n}: a simulator opens no socket or thread: {t.strip()}")
        if m in LAYER:
            for n, t in code:
                for dep in re.findall(r"crate::(\w+)", t):
                    if dep == m or dep not in LAYER:
                        continue
                    if LAYER[dep] >= LAYER[m]:
                        errors.append(f"{rel}:{n}: `{m}` may not use `{dep}` (layer {LAYER[dep]} "
                                      f">= {LAYER[m]}; see LAYERS in {pathlib.Path(__file__).name})")
                    elif m in CORES and dep in NARROW and NARROW[dep] not in t:
                        errors.append(f"{rel}:{n}: a core uses `{dep}` only through "
                                      f"`{NARROW[dep]}`: {t.strip()}")
        elif m not in ("lib", "main"):
            errors.append(f"{rel}: module `{m}` has no layer in {pathlib.Path(__file__).name}")
        size = len(split_tests(f))
        limit = GRANDFATHERED.get(str(rel), MAX_LINES)
        if size > limit:
            errors.append(f"{rel}: {size} lines of code outside tests (limit {limit}): split it")
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print("boundaries ok: the cores (" + ", ".join("src/" + c for c in CORES) + ") "
          "do no I/O, src/sim opens no socket, modules use only lower layers, no file over "
          f"{MAX_LINES} lines of code")


if __name__ == "__main__":
    main()
