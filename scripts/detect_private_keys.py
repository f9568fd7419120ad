"""Refuse files that contain a private key (PEM, OpenSSH, PGP, PuTTY): a pre-commit hook.

python scripts/detect_private_keys.py FILE...   exit 1 and name each file:line that holds one
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Written so this file does not match itself: every marker needs its dashes and words in this exact order.
PRIVATE_KEY_MARKER = re.compile(
    rb"-----BEGIN (?:(?:RSA|DSA|EC|OPENSSH|ENCRYPTED|SSH2 ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----"
    rb"|^PuTTY-User-Key-File-\d+:",
    re.MULTILINE,
)


def findings(path: Path) -> list[int]:
    """Line numbers of private key markers in `path` (none for unreadable files)."""
    try:
        content = path.read_bytes()
    except OSError:
        return []
    return [content.count(b"\n", 0, match.start()) + 1 for match in PRIVATE_KEY_MARKER.finditer(content)]


def main(arguments: list[str]) -> int:
    found = False
    for name in arguments:
        for line in findings(Path(name)):
            print(f"{name}:{line}: private key; keep keys out of the repository (use .env or a secret store)")
            found = True
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
