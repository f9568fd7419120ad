#!/usr/bin/env bash
# Install the Debian packages that lint and tests need and a fresh machine lacks.
# Idempotent: when every command below is already on PATH it touches nothing (no apt at all);
# otherwise it runs `apt-get update` once and installs only the missing packages.
# Needs root (CI runs as root) only when something is missing.
set -euo pipefail

# One entry per line: "<command that proves it is installed> <Debian package that provides it>".
# Append new needs here (e.g. "chromium chromium", "nginx nginx", "wrk wrk").
REQUIREMENTS=(
    "caddy caddy"              # `caddy validate` on the Caddyfile (scripts/lint-deploy.sh)
    "pg_dump postgresql-client" # scripts/backup.sh and restore.sh (and their test)
    "pg_restore postgresql-client"
    "chromium chromium"         # browser tests (Playwright drives Debian's Chromium, never its own)
    "wrk wrk"                   # make bench, and its smoke run in make test
    "nginx nginx"               # make bench: the static-file ceiling
    "promtool prometheus"       # `promtool check/test rules`, `check config` (scripts/lint-deploy.sh)
)

# nginx and friends live in /usr/sbin, which a non-login PATH may lack.
present() {
    command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]
}

missing_packages=()
for requirement in "${REQUIREMENTS[@]}"; do
    read -r command_name package <<<"$requirement"
    if present "$command_name"; then
        echo "install-system-deps: $command_name present"
    elif [[ " ${missing_packages[*]} " != *" $package "* ]]; then
        missing_packages+=("$package")
    fi
done

if ((${#missing_packages[@]} == 0)); then
    echo "install-system-deps: nothing to install"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-system-deps: missing ${missing_packages[*]}; run this script as root (or install them)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: apt-get update"
apt-get update -qq
echo "install-system-deps: apt-get install ${missing_packages[*]}"
# Debian's nginx and caddy packages start a system server on port 80 after installing, and prometheus
# one on port 9090; we only need the binaries (promtool), so service start-up is denied for this install
# (policy-rc.d exit 101), unless the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=true
fi
status=0
apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null || status=$?
if $own_policy; then rm -f "$policy"; fi
((status == 0)) || exit "$status"
# prometheus is installed for promtool alone: its server must not start at the next boot either
# (update-rc.d disables both the init script and the systemd unit).
if [[ " ${missing_packages[*]} " == *" prometheus "* ]]; then
    update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
for requirement in "${REQUIREMENTS[@]}"; do
    read -r command_name package <<<"$requirement"
    present "$command_name" || {
        echo "install-system-deps: $package installed but $command_name is still not on PATH" >&2
        exit 1
    }
done
echo "install-system-deps: done"
