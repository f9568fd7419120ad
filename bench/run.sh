#!/usr/bin/env bash
# `make bench`: install what the benchmark needs, then run bench/harness.py with these arguments.
#   bash bench/run.sh [--duration SECONDS] [--warmup SECONDS] [--smoke] [--profile] [--only PASS,...]
#                     [--doc PATH|-] [--results-dir DIR]
# (passes: reads, uploads, observability, scale, memory, variants, workers, s3; `--only workers` runs the worker
# tier alone; `--doc -` prints the page instead of writing it, which a run of `--only` may do)
# The harness stops what it started; this script's trap is the safety net for a harness that died
# hard (SIGKILL, out of memory): it kills every process group the harness recorded, then removes
# the work directory.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo_root"

bash bench/install.sh

BENCH_WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/chitram-bench-XXXXXX")"
export BENCH_WORKDIR

cleanup() {
    if [[ -f $BENCH_WORKDIR/pgids ]]; then
        while read -r pgid; do
            kill -KILL -- "-$pgid" 2>/dev/null || true
        done <"$BENCH_WORKDIR/pgids"
    fi
    rm -rf "$BENCH_WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nginx is in /usr/sbin, which a non-login PATH may lack.
PATH="$PATH:/usr/sbin" backend/.venv/bin/python bench/harness.py --command "bash bench/run.sh${*:+ $*}" "$@"
