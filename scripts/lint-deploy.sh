#!/usr/bin/env bash
# Lint the deployment files for real, offline:
#   backend/Dockerfile   hadolint
#   docker-compose.yml   the compose-spec JSON schema (vendored in deploy/, itself checked against the
#                        installed Docker Compose) and Docker Compose's own loader (`config`)
#   Caddyfile            `caddy validate` and `caddy fmt`
#   variable names       scripts/check_env_names.py (Compose, .env.example and the app's Settings agree)
#   deploy/prometheus/   `promtool check config` and `check rules`, and the alerts' unit tests (`test rules`)
#   monitoring names     scripts/check_monitoring.py (the Grafana dashboards and the alerts ask for metrics the
#                        app exposes, and each alert's runbook heading exists) and promtool on the
#                        dashboards' PromQL
#   shell scripts        shellcheck
# Every check runs; the exit status is non-zero if any failed.
#   bash scripts/lint-deploy.sh
# Other files can be checked instead (the tests do, with broken copies):
#   DOCKERFILE=... COMPOSE_FILE=... CADDYFILE=... ENV_EXAMPLE=... PROMETHEUS_DIR=... DASHBOARDS_DIR=... \
#       bash scripts/lint-deploy.sh
# Tools: hadolint, check-jsonschema, docker-compose and shellcheck come from backend/.venv (dev dependencies);
# caddy and promtool (package prometheus) from Debian (scripts/install-system-deps.sh).
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="${DOCKERFILE:-$REPO_ROOT/backend/Dockerfile}"
COMPOSE_FILE="${COMPOSE_FILE:-$REPO_ROOT/docker-compose.yml}"
CADDYFILE="${CADDYFILE:-$REPO_ROOT/Caddyfile}"
ENV_EXAMPLE="${ENV_EXAMPLE:-$REPO_ROOT/.env.example}"
# prometheus.yml, alerts.yml and alerts_test.yml, which name each other relative to this folder.
PROMETHEUS_DIR="${PROMETHEUS_DIR:-$REPO_ROOT/deploy/prometheus}"
DASHBOARDS_DIR="${DASHBOARDS_DIR:-$REPO_ROOT/deploy/grafana/dashboards}"
COMPOSE_SCHEMA="$REPO_ROOT/deploy/compose-spec.json"
VENV_BIN="${VENV_BIN:-$REPO_ROOT/backend/.venv/bin}"
export PATH="$VENV_BIN:$PATH"

failures=()

run_check() {
    local name="$1"
    shift
    echo "lint-deploy: $name"
    if ! "$@"; then
        echo "lint-deploy: FAILED: $name" >&2
        failures+=("$name")
    fi
}

require_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "lint-deploy: $1 not found; $2" >&2
    return 1
}

hadolint_check() {
    require_tool hadolint "run 'uv sync' in backend/" && hadolint "$DOCKERFILE"
}

compose_schema_check() {
    require_tool check-jsonschema "run 'uv sync' in backend/" \
        && check-jsonschema --schemafile "$COMPOSE_SCHEMA" "$COMPOSE_FILE"
}

compose_schema_current_check() {
    # The vendored schema must be the one the installed Docker Compose embeds (re-vendor after upgrades).
    "$VENV_BIN/python" "$REPO_ROOT/scripts/update_compose_schema.py" --check
}

compose_config_check() {
    # Compose's own loader: interpolation (with .env.example's placeholders), merge rules, references
    # between services, networks and volumes. It needs no Docker engine.
    require_tool docker-compose "run 'uv sync' in backend/" \
        && docker-compose --project-directory "$(dirname "$COMPOSE_FILE")" -f "$COMPOSE_FILE" \
            --env-file "$ENV_EXAMPLE" config --quiet
}

caddy_check() {
    require_tool caddy "run scripts/install-system-deps.sh" || return 1
    # DOMAIN and ACME_EMAIL are only placeholders here: validation contacts no ACME server.
    DOMAIN=example.com ACME_EMAIL=ops@example.com \
        caddy validate --adapter caddyfile --config "$CADDYFILE" 2>&1 | grep -v '"level":"info"'
    local status="${PIPESTATUS[0]}"
    ((status == 0)) || return "$status"
    # `caddy fmt` (2.6) prints the formatted file; any difference is a formatting error.
    caddy fmt "$CADDYFILE" | diff -u "$CADDYFILE" - || {
        echo "lint-deploy: $CADDYFILE is not formatted: run 'caddy fmt --overwrite $CADDYFILE'" >&2
        return 1
    }
}

prometheus_check() {
    require_tool promtool "run scripts/install-system-deps.sh" || return 1
    # Offline: `check config` resolves no DNS name; it also checks the rule files the config names.
    promtool check config "$PROMETHEUS_DIR/prometheus.yml" \
        && promtool check rules "$PROMETHEUS_DIR/alerts.yml" \
        && promtool test rules "$PROMETHEUS_DIR/alerts_test.yml"
}

monitoring_names_check() {
    require_tool promtool "run scripts/install-system-deps.sh" || return 1
    # The dashboards' queries, written as recording rules, so promtool parses their PromQL too.
    local queries
    queries="$(mktemp --suffix=.yml)"
    "$VENV_BIN/python" "$REPO_ROOT/scripts/check_monitoring.py" \
        --alerts "$PROMETHEUS_DIR/alerts.yml" --dashboards "$DASHBOARDS_DIR" --queries-as-rules "$queries" \
        && promtool check rules --lint=none "$queries" >/dev/null
    local status=$?
    rm -f "$queries"
    return "$status"
}

shellcheck_check() {
    # The image's entrypoint and the operations scripts; run from the root so `source=` directives resolve.
    require_tool shellcheck "run 'uv sync' in backend/" \
        && (cd "$REPO_ROOT" && shellcheck -x scripts/*.sh backend/scripts/*.sh)
}

env_names_check() {
    "$VENV_BIN/python" "$REPO_ROOT/scripts/check_env_names.py" --compose "$COMPOSE_FILE" --env-example "$ENV_EXAMPLE"
}

run_check "hadolint $DOCKERFILE" hadolint_check
run_check "compose-spec schema $COMPOSE_FILE" compose_schema_check
run_check "vendored compose-spec schema is current" compose_schema_current_check
run_check "docker-compose config $COMPOSE_FILE" compose_config_check
run_check "caddy validate $CADDYFILE" caddy_check
run_check "environment names" env_names_check
run_check "prometheus config, alerts and their tests $PROMETHEUS_DIR" prometheus_check
run_check "dashboards' queries, metrics and runbooks $DASHBOARDS_DIR" monitoring_names_check
run_check "shellcheck scripts" shellcheck_check

if ((${#failures[@]} > 0)); then
    echo "lint-deploy: ${#failures[@]} check(s) failed: ${failures[*]}" >&2
    exit 1
fi
echo "lint-deploy: all deployment checks passed"
