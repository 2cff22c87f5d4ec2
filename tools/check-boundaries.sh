#!/usr/bin/env bash
# The shape of the source tree: sans-IO cores, layers without cycles, narrow doors, file
# sizes. The rules and why: tools/check_boundaries.py.
set -euo pipefail
exec python3 "$(dirname "$0")/check_boundaries.py"
