#!/bin/sh
# A client of the peershare local API the way EchoChain's bash examples are: the request
# and a newline piped into OpenBSD netcat, which half-closes its side at end of input (-N)
# and prints every reply line until the node closes the connection.
#
# Usage: nc_client.sh HOST PORT 'REQUEST_JSON'
set -eu
if [ $# -ne 3 ]; then
  echo "usage: nc_client.sh HOST PORT REQUEST_JSON" >&2
  exit 2
fi
printf '%s\n' "$3" | nc -N "$1" "$2"
