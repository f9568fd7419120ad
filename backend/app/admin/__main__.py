"""`python -m app.admin`: operator commands, each a subcommand with its own options."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Coroutine
from datetime import date
from typing import Any

from app.admin import jobs, regenerate, scrub, strip_metadata
from app.admin.bulk import WINDOW
from app.config import load_settings_or_exit

# What Ctrl-C leaves behind, per command (each is safe to interrupt and to run again).
INTERRUPTED = {
    "strip-metadata": "every image is either done or untouched; run the command again to go on",
    "regenerate": "every thumbnail is either the old one or the new one (queued jobs still run on the workers); "
    "run the command again, without --force, to go on",
    "scrub": "its place is saved after each window (queued jobs still run on the workers); run it again to go on",
    "jobs": "run the command again to see what it did",
}


def main(argv: list[str] | None = None) -> int:
    parser, retry_parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.command == "jobs" and arguments.jobs_command == "retry" and arguments.all == bool(arguments.ids):
        retry_parser.error("name image ids or job ids, or give --all (not both)")
    settings = load_settings_or_exit()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work: Coroutine[Any, Any, int]
    if arguments.command == "strip-metadata":
        work = strip_metadata.run(settings, batch_size=arguments.batch_size)
    elif arguments.command == "regenerate":
        selection = regenerate.Selection(
            image_ids=tuple(arguments.image or ()), user_email=arguments.user, since=arguments.since
        )
        work = regenerate.run(settings, selection, force=arguments.force, window=arguments.window)
    elif arguments.command == "scrub":
        work = scrub.run(settings, restart=arguments.restart, window=arguments.window)
    elif arguments.jobs_command == "failed":
        work = jobs.failed(settings, limit=arguments.limit)
    else:
        image_ids = [job_id for job_id in arguments.ids if isinstance(job_id, uuid.UUID)]
        job_ids = [job_id for job_id in arguments.ids if isinstance(job_id, int)]
        work = jobs.retry(settings, everything=arguments.all, image_ids=image_ids, job_ids=job_ids)
    try:
        return asyncio.run(work)
    except KeyboardInterrupt:
        print(f"interrupted: {INTERRUPTED[arguments.command]}", file=sys.stderr)
        return 130


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line, and the `jobs retry` parser (whose ids and --all are checked after parsing)."""
    parser = argparse.ArgumentParser(prog="python -m app.admin", description="Chitram operator commands.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    strip = commands.add_parser(
        "strip-metadata",
        help="strip the metadata of originals stored before stripping (resumable, idempotent)",
        description=strip_metadata.DESCRIPTION,
    )
    strip.add_argument("--batch-size", type=int, default=strip_metadata.BATCH_SIZE, help="images per batch")

    again = commands.add_parser(
        "regenerate",
        help="make ready thumbnails again with today's settings (resumable, low priority)",
        description=regenerate.DESCRIPTION,
    )
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every image")
    which.add_argument("--image", nargs="+", type=_image_id, metavar="ID", help="these images")
    which.add_argument("--user", metavar="EMAIL", help="the images of the account with this email")
    which.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="images uploaded on or after this day (UTC)")
    again.add_argument("--force", action="store_true", help="also those made with today's settings already")
    again.add_argument("--window", type=_positive, default=WINDOW, help=f"jobs per window (default {WINDOW})")

    check = commands.add_parser(
        "scrub",
        help="check every stored original against its checksum (resumable, low priority)",
        description=scrub.DESCRIPTION,
    )
    check.add_argument("--restart", action="store_true", help="start over instead of going on from the saved place")
    check.add_argument("--window", type=_positive, default=WINDOW, help=f"jobs per window (default {WINDOW})")

    queue = commands.add_parser("jobs", help="failed thumbnails and held jobs: list them, retry them")
    actions = queue.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "failed", help="list failed thumbnails and held jobs", description=jobs.FAILED_DESCRIPTION
    )
    listing.add_argument("--limit", type=_positive, default=50, help="at most this many of each (default 50)")
    retrying = actions.add_parser(
        "retry", help="retry failed thumbnails and held jobs", description=jobs.RETRY_DESCRIPTION
    )
    retrying.add_argument("--all", action="store_true", help="every failed thumbnail and every held job")
    retrying.add_argument("ids", nargs="*", type=_image_or_job_id, metavar="ID", help="image ids and job ids")
    return parser, retrying


def _image_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an image id (a UUID)") from None


def _image_or_job_id(text: str) -> uuid.UUID | int:
    if text.isdigit():
        return int(text)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an image id (a UUID) nor a job id (a number)") from None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day written YYYY-MM-DD") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
