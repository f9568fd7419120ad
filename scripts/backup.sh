#!/usr/bin/env bash
# Back up Chitram: a pg_dump (custom format) of DATABASE_URL's database and a copy of every stored object,
# into a new timestamped directory with checksums. Restore it with scripts/restore.sh.
set -euo pipefail
# shellcheck source=scripts/backup-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup-common.sh"

usage() {
    cat <<USAGE
usage: scripts/backup.sh BACKUP_ROOT
Writes BACKUP_ROOT/chitram-<UTC timestamp>/ containing
  database.dump  pg_dump --format=custom of the database
  objects/       every stored object, by key; objects.json lists each with its SHA-256
  SHA256SUMS     checksums of database.dump and objects.json (sha256sum -c)
Environment, the same as the app's:
  DATABASE_URL       postgresql+asyncpg://user:password@host:port/database
$STORAGE_ENV_HELP
pg_dump must be as new as the PostgreSQL server (the Compose stack runs PostgreSQL 16).
The database is dumped first, then the objects: an image deleted in between is then still in the
backup, and one uploaded in between is at worst an unreferenced object, never a row without its file.
USAGE
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac
[[ $# -eq 1 ]] || { usage >&2; exit 2; }
require_environment
export_libpq_environment

backup_root="$1"
mkdir -p "$backup_root"
name="chitram-$(date -u +%Y%m%dT%H%M%SZ)"
target="$backup_root/$name"
partial="$target.partial"
[[ ! -e "$target" && ! -e "$partial" ]] || die "$target already exists"
mkdir "$partial"
# A failed run leaves only a *.partial directory, never something that looks like a finished backup.
trap 'echo "backup.sh: failed; incomplete files left in $partial" >&2' ERR

echo "backup.sh: dumping database $PGDATABASE"
pg_dump --format=custom --compress=6 --file="$partial/database.dump"
echo "backup.sh: copying objects"
"$PYTHON" "$REPO_ROOT/scripts/object_copy.py" download-all "$partial"
(cd "$partial" && sha256sum database.dump objects.json >SHA256SUMS)
mv "$partial" "$target"
trap - ERR
echo "backup.sh: backup written to $target"
