#!/usr/bin/env python3
"""A client of the peershare local API written the way EchoChain's Python client is.

One `sendall` of the JSON request (no trailing newline, the connection left open), then a
single `recv(4096)`, parsed with `json.loads`. Nothing else: no newline, no half-close, no
loop until `\\n`. peershare must answer such a client correctly (protocol-spec/api.md).

Usage:
    echochain_client.py HOST PORT 'REQUEST_JSON'   # parsed, then sent as json.dumps() gives it
    echochain_client.py HOST PORT - < BYTES        # stdin sent verbatim (for malformed input)

Prints the parsed reply as one JSON line on stdout and `received N bytes` on stderr.
Exit status: 0 when a reply was received and parsed, 1 otherwise.
"""
import json
import socket
import sys


def send_bytes(host, port, body, timeout=120):
    """Connect, one `sendall` of `body`, one `recv(4096)`; returns the bytes received."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)  # a bound for the test suite; EchoChain waits forever
        s.connect((host, port))
        try:
            s.sendall(body)
        except OSError as e:
            # An oversized request: the node answers with an error and stops reading
            # while we are still sending. Its reply is still waiting to be read.
            print(f"sendall: {e}", file=sys.stderr)
        return s.recv(4096)


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, request = argv[1], int(argv[2]), argv[3]
    if request == "-":
        body = sys.stdin.buffer.read()
    else:
        body = json.dumps(json.loads(request)).encode()
    try:
        data = send_bytes(host, port, body)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"received {len(data)} bytes", file=sys.stderr)
    try:
        reply = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        print(f"error: the reply is not one JSON object ({e}): {data[:200]!r}", file=sys.stderr)
        return 1
    print(json.dumps(reply, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
