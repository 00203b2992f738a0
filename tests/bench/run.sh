#!/bin/sh
# run.sh - the wzp-relay benchmark suite in one command (see doc/BENCHMARKS.md).
#
#   tests/bench/run.sh            full run: every scenario for 10 s, table + JSON
#   tests/bench/run.sh --smoke    ~30 s functional check (CI): fails only if something
#                                 did not work or delivery was below 99 %
#   tests/bench/run.sh --help     every option
#
# The work is done by bench.py next to this file (Python 3 standard library only).
set -eu
if ! command -v python3 >/dev/null 2>&1; then
    echo "run.sh: python3 is needed (apt-get install python3)" >&2
    exit 1
fi
exec python3 "$(dirname "$0")/bench.py" "$@"
