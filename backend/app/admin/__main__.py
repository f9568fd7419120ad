"""`python -m app.admin`: operator commands, each a subcommand with its own options."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from app.admin import strip_metadata
from app.config import load_settings_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.admin", description="Chitram operator commands.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    strip = commands.add_parser(
        "strip-metadata",
        help="strip the metadata of originals stored before stripping (resumable, idempotent)",
        description=strip_metadata.DESCRIPTION,
    )
    strip.add_argument("--batch-size", type=int, default=strip_metadata.BATCH_SIZE, help="images per batch")
    arguments = parser.parse_args(argv)

    settings = load_settings_or_exit()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(strip_metadata.run(settings, batch_size=arguments.batch_size))
    except KeyboardInterrupt:
        print("interrupted: every image is either done or untouched; run the command again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
