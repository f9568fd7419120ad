#!/usr/bin/env bash
# Install what `make bench` needs and the machine may lack: wrk and nginx from Debian's packages,
# py-spy (a dev dependency in backend/pyproject.toml) into backend/.venv. Idempotent: a second run
# installs nothing and does not touch the network.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# nginx lives in /usr/sbin, which a non-login PATH may lack.
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)

if ((${#missing[@]})); then
    echo "bench/install.sh: installing ${missing[*]} from Debian's packages" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    # The package lists are refreshed only when apt cannot find a candidate in the ones on disk.
    if ! apt-cache policy "${missing[@]}" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        "${sudo_cmd[@]}" apt-get update -qq
    fi
    # Debian's nginx package starts a system nginx on 0.0.0.0:80 after installing; the benchmark
    # runs its own on loopback, so service start-up is denied for this install only (policy-rc.d
    # exit 101), unless the machine already has a policy of its own.
    policy=/usr/sbin/policy-rc.d
    own_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
        "${sudo_cmd[@]}" chmod +x "$policy"
        own_policy=true
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null || status=$?
    if $own_policy; then "${sudo_cmd[@]}" rm -f "$policy"; fi
    ((status == 0)) || exit "$status"
fi

if [[ ! -x $repo_root/backend/.venv/bin/py-spy ]]; then
    echo "bench/install.sh: installing the backend's locked dev dependencies (py-spy)" >&2
    uv_bin="$(command -v uv || echo "$repo_root/.tools/bin/uv")"
    (cd "$repo_root/backend" && UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="$repo_root/backend/.venv" \
        "$uv_bin" sync --frozen --quiet)
fi
