#!/usr/bin/env python3
"""Many EchoChain-pattern clients at once: N threads, each one connection, one `sendall`,
one `recv(4096)`, one `json.loads` (see echochain_client.py), started together.

Usage: many_clients.py HOST PORT N CONTENT_HASH OWNER_ADDRESS

Each thread sends one of the contract's read commands about CONTENT_HASH (content the node
has, registered by OWNER_ADDRESS) and checks the reply's fields. Prints one JSON line:
{"clients": N, "ok": ..., "failures": [...], "max_reply_bytes": ...}; exit status 0 when
every client got a correct reply.
"""
import json
import socket
import sys
import threading


def ask(host, port, command_type, payload):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(120)  # a bound for the test suite only
        s.connect((host, port))
        s.sendall(json.dumps({"type": command_type, "payload": payload}).encode())
        data = s.recv(4096)
        return json.loads(data.decode()), len(data)


def checks(content_hash, owner):
    """(command, payload, check(reply) -> None or what is wrong), cycled over the clients."""

    def is_success(r):
        return None if r.get("status") == "success" else "status is not success"

    def list_ok(r):
        if r.get("status") != "success":
            return "status"
        return None if content_hash in r.get("content_hashes", []) else "hash not listed"

    def all_ok(r):
        items = r.get("available_content")
        if r.get("status") != "success" or not isinstance(items, list):
            return "no available_content"
        for c in items:
            if c.get("content_id") == content_hash:
                keys = {"content_id", "filename", "size", "num_chunks", "peers"}
                return None if keys <= set(c) else f"fields {sorted(c)}"
        return "content not in available_content"

    def local_ok(r):
        if r.get("status") != "success":
            return "status"
        if r.get("message") != "File already available locally":
            return f"message {r.get('message')!r}"
        return None if r.get("filename") else "no filename"

    def verify_ok(r):
        return None if r.get("status") == "success" and r.get("verified") is True else "verify"

    def info_ok(r):
        peers = r.get("peers")
        if r.get("status") != "success" or not peers:
            return "no peers"
        return None if all(isinstance(p, str) and ":" in p for p in peers) else "peers"

    def unknown_ok(r):
        if r.get("status") == "error" and r.get("message") == "Unknown command":
            return None
        return "not Unknown command"

    return [
        ("local_list_content", {}, list_ok),
        ("local_request_content_info", {"content_hash": "all_available_content"}, all_ok),
        ("local_request_file", {"content_hash": content_hash}, local_ok),
        ("local_verify_file_on_chain", {"file_hash": content_hash, "owner_address": owner},
         verify_ok),
        ("local_request_content_info", {"content_hash": content_hash}, info_ok),
        ("status", {}, is_success),
        ("no_such_command", {}, unknown_ok),
    ]


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, n, content_hash, owner = argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5]
    plan = checks(content_hash, owner)
    start = threading.Barrier(n)
    lock = threading.Lock()
    results = {"clients": n, "ok": 0, "failures": [], "max_reply_bytes": 0}

    def client(i):
        command, payload, check = plan[i % len(plan)]
        try:
            start.wait(timeout=60)
            reply, size = ask(host, port, command, payload)
            wrong = check(reply)
        except Exception as e:  # any failure is reported, not raised
            reply, size, wrong = None, 0, f"{type(e).__name__}: {e}"
        with lock:
            results["max_reply_bytes"] = max(results["max_reply_bytes"], size)
            if wrong is None:
                results["ok"] += 1
            else:
                results["failures"].append({"client": i, "command": command,
                                            "wrong": wrong, "reply": reply})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))
    return 0 if results["ok"] == n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
