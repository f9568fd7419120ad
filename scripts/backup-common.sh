# shellcheck shell=bash
# Shared by scripts/backup.sh and scripts/restore.sh (sourced, not run).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The backend's venv: object_copy.py imports the app's settings and storage code.
PYTHON="${PYTHON:-$REPO_ROOT/backend/.venv/bin/python}"
# shellcheck disable=SC2034 # used in the sourcing scripts' usage text
STORAGE_ENV_HELP='  STORAGE_BACKEND    local or minio, as the app reads it
  LOCAL_STORAGE_PATH the storage folder                 (STORAGE_BACKEND=local)
  MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_BUCKET
                     the bucket; MINIO_SECURE, MINIO_REGION optional (STORAGE_BACKEND=minio)
  PYTHON             the backend venv'"'"'s python (default backend/.venv/bin/python)'

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Refuse to guess: each required variable must be set, and the storage ones must match the backend.
require_environment() {
    local missing=() name
    for name in DATABASE_URL STORAGE_BACKEND; do
        [[ -n "${!name:-}" ]] || missing+=("$name")
    done
    case "${STORAGE_BACKEND:-}" in
        local) [[ -n "${LOCAL_STORAGE_PATH:-}" ]] || missing+=(LOCAL_STORAGE_PATH) ;;
        minio)
            for name in MINIO_ENDPOINT MINIO_ACCESS_KEY MINIO_SECRET_KEY MINIO_BUCKET; do
                [[ -n "${!name:-}" ]] || missing+=("$name")
            done
            ;;
        "") ;;
        *) die "STORAGE_BACKEND must be local or minio, not '$STORAGE_BACKEND'" ;;
    esac
    if ((${#missing[@]} > 0)); then
        usage >&2
        die "missing environment: ${missing[*]}"
    fi
    [[ -x "$PYTHON" ]] || die "$PYTHON not found: run 'uv sync' in backend/ or set PYTHON"
    local tool
    for tool in pg_dump pg_restore psql sha256sum; do
        command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-system-deps.sh"
    done
}

# DATABASE_URL is the app's SQLAlchemy URL (postgresql+asyncpg://user:password@host:port/db). libpq tools
# get it as PG* variables instead: the password stays off the command line, and URL escapes
# (%40 for @ ...) are decoded by SQLAlchemy exactly as the app decodes them.
export_libpq_environment() {
    local assignments
    assignments="$("$PYTHON" - <<'PYTHON'
import os
import shlex
import sys

from sqlalchemy.engine import make_url

url = make_url(os.environ["DATABASE_URL"])
if not url.drivername.startswith("postgresql"):
    sys.exit(f"DATABASE_URL must be a PostgreSQL URL, not {url.drivername}")
if not url.database:
    sys.exit("DATABASE_URL must name a database")
values = {
    "PGHOST": url.host or "",
    "PGPORT": str(url.port or ""),
    "PGUSER": url.username or "",
    "PGPASSWORD": url.password or "",
    "PGDATABASE": url.database,
}
# asyncpg spells TLS as ?ssl=require; libpq as sslmode.
ssl = url.query.get("sslmode") or url.query.get("ssl")
if isinstance(ssl, str):
    values["PGSSLMODE"] = ssl
for name, value in values.items():
    if value:
        print(f"export {name}={shlex.quote(value)}")
    else:
        print(f"unset {name}")
PYTHON
)" || die "cannot read DATABASE_URL"
    eval "$assignments"
}
