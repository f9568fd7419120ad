#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh into an EMPTY database and EMPTY storage, verifying every
# checksum. It refuses to touch a database that has tables or a store that holds objects.
set -euo pipefail
# shellcheck source=scripts/backup-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup-common.sh"

usage() {
    cat <<USAGE
usage: scripts/restore.sh BACKUP_DIR
BACKUP_DIR is one directory written by scripts/backup.sh (chitram-<timestamp>).
Environment, the same as the app's, naming the EMPTY targets:
  DATABASE_URL       postgresql+asyncpg://user:password@host:port/database (created, with no tables)
$STORAGE_ENV_HELP
Stop the app first, restore, then start it: its migrations find the schema already current.
USAGE
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac
[[ $# -eq 1 ]] || { usage >&2; exit 2; }
require_environment
export_libpq_environment

backup_dir="$1"
[[ -f "$backup_dir/SHA256SUMS" && -f "$backup_dir/database.dump" ]] \
    || die "$backup_dir is not a backup written by scripts/backup.sh"

echo "restore.sh: verifying checksums"
(cd "$backup_dir" && sha256sum --check --quiet SHA256SUMS) || die "$backup_dir is damaged (checksum mismatch)"
"$PYTHON" "$REPO_ROOT/scripts/object_copy.py" verify "$backup_dir" || die "$backup_dir is damaged"

echo "restore.sh: checking that the targets are empty"
relations="$(psql --no-psqlrc --tuples-only --no-align --set=ON_ERROR_STOP=1 --command "
    SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")" \
    || die "cannot connect to database $PGDATABASE"
[[ "$relations" == "0" ]] || die "database $PGDATABASE is not empty ($relations relations); restore only into an empty one"
"$PYTHON" "$REPO_ROOT/scripts/object_copy.py" check-empty

echo "restore.sh: restoring database $PGDATABASE"
# One transaction: a failed restore leaves the database empty again, ready for another try.
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname="$PGDATABASE" \
    "$backup_dir/database.dump"
echo "restore.sh: restoring objects"
"$PYTHON" "$REPO_ROOT/scripts/object_copy.py" upload-all "$backup_dir"
echo "restore.sh: restored $backup_dir"
