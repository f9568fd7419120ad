#!/bin/sh
# The image's entrypoint: wait for the database, bring its schema to the newest Alembic revision, then
# exec the command (`python -m app` by default). Migrating here, once, before uvicorn forks its workers, means
# no worker ever serves an old schema and no two workers race to migrate.
#   PRESTART_DB_ATTEMPTS (default 30) and PRESTART_DB_INTERVAL (seconds, default 2) bound the wait;
#   SKIP_PRESTART=1 runs the command directly (e.g. a one-off shell in the image).
set -eu

if [ "${SKIP_PRESTART:-0}" = "1" ]; then
    exec "$@"
fi

python - "${PRESTART_DB_ATTEMPTS:-30}" "${PRESTART_DB_INTERVAL:-2}" <<'PYTHON'
"""Connect with the app's own settings and engine until `SELECT 1` answers, a bounded number of times."""
import asyncio
import sys

from sqlalchemy import text

from app.config import load_settings_or_exit
from app.database import create_engine

attempts, interval = int(sys.argv[1]), float(sys.argv[2])


# A bad configuration exits here at once (status 2): waiting cannot fix it.
settings = load_settings_or_exit()


async def database_answers() -> bool:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception as error:  # any failure means "not yet": refused, DNS, starting up, auth not ready
        print(f"prestart: database not ready: {type(error).__name__}: {error}", file=sys.stderr)
        return False
    finally:
        await engine.dispose()


async def main() -> int:
    for attempt in range(1, attempts + 1):
        if await database_answers():
            print(f"prestart: database ready (attempt {attempt})", file=sys.stderr)
            return 0
        if attempt < attempts:
            await asyncio.sleep(interval)
    print(f"prestart: database still unreachable after {attempts} attempts; giving up", file=sys.stderr)
    return 1


sys.exit(asyncio.run(main()))
PYTHON

echo "prestart: alembic upgrade head" >&2
alembic upgrade head

exec "$@"
