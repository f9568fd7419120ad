"""The failure scenario's checks (issue 18), once the load has stopped.

- Failed answers: every 5xx and every request that got no answer at all, timed against each kill.
  Allowed are only 502, 503 and no answer, from a second before an API process's kill to
  KILL_WINDOW_AFTER seconds after it: the requests its process held when it died. A worker tier's kill
  must cost the API's clients nothing.
- What was stored: every upload that got a 201 and was not deleted answers its metadata, its file
  (the very bytes the 201 described: size and SHA-256) and its thumbnail through the balancer, and
  its metadata and file through each API process directly (all of them, or a sample of
  DIRECT_SAMPLE). Every image whose delete was answered is 404 (metadata, file, thumbnail) through the
  balancer and through each API process: no process serves it from a cache of its own.
- Thumbnails: every stored image's thumbnail is ready within THUMBNAIL_LIMIT_SECONDS of the load's end,
  and none failed (the rows are polled in the database; the thumbnails are then fetched over HTTP).
- The rate limit: of the probe's uploads from one address, over both API processes and the balancer,
  exactly the limit is admitted, each API process admitting some: one count, not one per process.
- The bucket: every object a row names is there. For the report only: rows stored for uploads whose
  client got no 201 (committed, then the answer was lost), and objects no row names (orphans).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import httpx

from scale_out_layout import FAIL_TIMEOUT_SECONDS, AccessLine, Kill, Member
from scale_out_load import IMAGES_PATH, Answer, Clock, Upload

KILL_WINDOW_BEFORE = 1.0
KILL_WINDOW_AFTER = 5.0
ALLOWED_FAILURES = frozenset({0, 502, 503})
THUMBNAIL_LIMIT_SECONDS = 60.0
THUMBNAIL_POLL_SECONDS = 0.2
DIRECT_SAMPLE = 100
VERIFY_CONCURRENCY = 8
SHOWN = 5  # problems quoted in a check's detail


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check(name: str, problems: Sequence[str], summary: str) -> Check:
    """A check that holds when there are no problems; its detail quotes the first few."""
    quoted = f"; {len(problems)} problems, e.g. {list(problems[:SHOWN])}" if problems else ""
    return Check(name, not problems, summary + quoted)


# -- failed answers and the kills -------------------------------------------------------------------


def failed_answers(answers: Sequence[Answer], kills: Sequence[Kill], clock: Clock) -> list[dict[str, Any]]:
    """Every 5xx or unanswered request: when it ended relative to each kill, and whether it is allowed."""
    api_kills = [clock.at(kill.at) for kill in kills if kill.kind == "api"]
    rows = []
    for answer in answers:
        if 0 < answer.status < 500:
            continue
        near_api_kill = any(-KILL_WINDOW_BEFORE <= answer.ended - at <= KILL_WINDOW_AFTER for at in api_kills)
        rows.append(
            {
                **asdict(answer),
                "started": round(answer.started, 3),
                "ended": round(answer.ended, 3),
                "after_kill_s": {kill.member: round(answer.ended - clock.at(kill.at), 3) for kill in kills},
                "allowed": answer.status in ALLOWED_FAILURES and near_api_kill,
            }
        )
    return rows


def failures_check(rows: Sequence[Mapping[str, Any]]) -> Check:
    bad = [
        f"{row['kind']} via {row['target']}: {row['status'] or row['error']} at {row['ended']} s"
        for row in rows
        if not row["allowed"]
    ]
    return check(
        "no 5xx but 502/503 around an API process's kill",
        bad,
        f"{len(rows)} answers were 5xx or none; allowed: 502, 503 or none from {KILL_WINDOW_BEFORE:g} s before "
        f"to {KILL_WINDOW_AFTER:g} s after an API process's kill",
    )


def kill_summary(
    kill: Kill,
    member: Member,
    clock: Clock,
    rows: Sequence[Mapping[str, Any]],
    access: Sequence[AccessLine],
    served: int | None,
) -> dict[str, Any]:
    """One kill: what it ended, the failed answers around it, and how soon the member was back.

    `served`: requests (an API process) or thumbnails (a worker tier) the restarted start has done.
    """
    restarted = member.starts[-1] if len(member.starts) > 1 else None
    near = [row for row in rows if -KILL_WINDOW_BEFORE <= row["after_kill_s"][kill.member] <= KILL_WINDOW_AFTER]
    summary: dict[str, Any] = {
        "member": kill.member,
        "kind": kill.kind,
        "at_s": round(clock.at(kill.at), 3),
        "pids": list(kill.pids),
        "exit_status": kill.exit_status,
        "all_gone": kill.gone,
        "restarted_pid": restarted.pid if restarted else None,
        "restart_ready_after_s": round(restarted.ready_at - kill.at, 2) if restarted else None,
        "failed_answers_near": dict(Counter(str(row["status"] or row["error"]) for row in near)),
        "failed_answers_after_s": [row["after_kill_s"][kill.member] for row in near],
    }
    if kill.kind == "api":
        address = f"127.0.0.1:{member.port}"
        ready_wall = kill.wall + (restarted.ready_at - kill.at) if restarted else float("inf")
        after = [line for line in access if line.ended_at >= kill.wall]
        back = [line for line in after if line.ended_at >= ready_wall and line.upstreams[-1:] == (address,)]
        summary |= {
            # Requests the balancer sent to the dead server and then to the other (their clients got the
            # other's answer), from the kill until the restarted process was back in rotation.
            "passed_on_by_balancer": sum(
                len(line.upstreams) > 1 and line.ended_at <= ready_wall + FAIL_TIMEOUT_SECONDS + 1 for line in after
            ),
            "balanced_to_restarted": len(back),
            "first_balanced_after_s": round(min(line.ended_at for line in back) - kill.wall, 2) if back else None,
            "requests_served_by_restarted": served,
        }
    else:
        summary["thumbnails_made_by_restarted"] = served
    return summary


def kills_check(summaries: Sequence[Mapping[str, Any]], expected: int) -> Check:
    problems = []
    for summary in summaries:
        name = summary["member"]
        if summary["exit_status"] != -9 or not summary["all_gone"]:
            problems.append(f"{name}: exit {summary['exit_status']}, every process gone: {summary['all_gone']}")
        if summary["restarted_pid"] is None or summary["restarted_pid"] in summary["pids"]:
            problems.append(f"{name}: not started again as a new process")
        served = summary.get("requests_served_by_restarted", summary.get("thumbnails_made_by_restarted"))
        if not served:
            problems.append(f"{name}: the restarted process did no work ({served})")
        if summary["kind"] == "api" and not summary["balanced_to_restarted"]:
            problems.append(f"{name}: the balancer sent the restarted process nothing")
    if len(summaries) != expected:
        problems.append(f"{len(summaries)} kills, {expected} planned")
    return check(
        "each kill ended its processes, and the member came back and worked",
        problems,
        f"{len(summaries)} kills (SIGKILL to the process group), each restarted",
    )


# -- the rate limit, lost answers ------------------------------------------------------------------------


def rate_limit_check(probe: Mapping[str, Any], api_names: Sequence[str]) -> Check:
    problems = []
    if probe["admitted"] != probe["limit_per_minute"]:
        problems.append(f"{probe['admitted']} admitted, limit {probe['limit_per_minute']}")
    if set(probe["statuses"]) - {"201", "429"}:
        problems.append(f"statuses {probe['statuses']}")
    problems += [f"{name} admitted none directly" for name in api_names if not probe["admitted_by_target"][name]]
    return check(
        "the upload rate limit holds across API processes",
        problems,
        f"{probe['sent']} uploads from {probe['address']}: admitted {probe['admitted_by_target']}, "
        f"statuses {probe['statuses']}",
    )


def lost_answers(unanswered: Sequence[Upload], rows_left: Mapping[str, Sequence[object]]) -> dict[str, Any]:
    """Uploads whose client got a 5xx or nothing, and which of them were stored all the same."""
    stored_anyway = [upload.address for upload in unanswered if rows_left.get(upload.address)]
    return {
        "uploads_without_answer": len(unanswered),
        "stored_all_the_same": len(stored_anyway),
        "addresses": stored_anyway,
        "meaning": "committed, then the process died before its 201 left: the client cannot tell, and its "
        "retry makes a second record of the same content",
    }


# -- thumbnails, stored bytes, deleted images ---------------------------------------------------------


async def wait_for_thumbnails(dsn: str, image_ids: Sequence[str]) -> dict[str, Any]:
    """Poll the rows until no thumbnail of these images is pending (or THUMBNAIL_LIMIT_SECONDS pass)."""
    ids = [uuid.UUID(image_id) for image_id in image_ids]
    connection = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while True:
            row = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE thumbnail_status = 'pending') AS pending, "
                "count(*) FILTER (WHERE thumbnail_status = 'failed') AS failed, count(*) AS rows, "
                "count(*) FILTER (WHERE thumbnail_attempts > 1) AS retried "
                "FROM images WHERE id = ANY($1::uuid[])",
                ids,
            )
            waited = time.monotonic() - started
            if row["pending"] == 0 or waited > THUMBNAIL_LIMIT_SECONDS:
                return {
                    "images": len(ids),
                    "rows": row["rows"],
                    "pending": row["pending"],
                    "failed": row["failed"],
                    # Jobs run more than once: a worker died under them (or a render failed and was retried).
                    "made_in_a_later_attempt": row["retried"],
                    "waited_s": round(waited, 2),
                }
            await asyncio.sleep(THUMBNAIL_POLL_SECONDS)
    finally:
        await connection.close()


async def jobs_running(dsn: str) -> int:
    """Thumbnail jobs running now, on any worker: pending rows with a live claim."""
    connection = await asyncpg.connect(dsn)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM images WHERE thumbnail_status = 'pending' AND thumbnail_lease_until > now()"
        )
    finally:
        await connection.close()
    return int(count)


async def rows_by_address(dsn: str, addresses: Sequence[str]) -> dict[str, list[tuple[str, str | None]]]:
    """The rows each of these upload addresses left: (storage key, thumbnail key) of each."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT upload_ip, storage_key, thumbnail_key FROM images WHERE upload_ip = ANY($1::text[])",
            list(addresses),
        )
    finally:
        await connection.close()
    left: dict[str, list[tuple[str, str | None]]] = {}
    for row in rows:
        left.setdefault(row["upload_ip"], []).append((row["storage_key"], row["thumbnail_key"]))
    return left


def bucket_audit(
    objects: set[str], rows: Mapping[str, Sequence[tuple[str, str | None]]], deleted: Sequence[Upload]
) -> dict[str, Any]:
    """The bucket against the rows: objects a row names but the bucket lacks (lost data), and objects no
    row names (orphans), told apart by what left them: a delete that did not finish, or an upload that
    stored its bytes but never committed its row."""
    named = {key for keys in rows.values() for pair in keys for key in pair if key is not None}
    missing = sorted(named - objects)
    unnamed = sorted(objects - named)
    left_by_deletes = [
        key
        for key in unnamed
        if any(
            (upload.image_id and upload.image_id in key) or (upload.checksum and upload.checksum in key)
            for upload in deleted
        )
    ]
    return {
        "objects": len(objects),
        "rows": sum(len(keys) for keys in rows.values()),
        "named_but_missing": missing[:SHOWN],
        "named_but_missing_count": len(missing),
        "orphans": len(unnamed),
        "orphans_left_by_deletes": left_by_deletes[:SHOWN],
        "orphans_left_by_uploads": [key for key in unnamed if key not in left_by_deletes][:SHOWN],
    }


class Verifier:
    """Asks every target (the balancer, each API process directly) about stored and deleted images."""

    def __init__(self, client: httpx.AsyncClient, targets: Mapping[str, str]) -> None:
        self.client = client
        self.targets = dict(targets)  # name -> base URL; "lb" is the balancer
        self.gate = asyncio.Semaphore(VERIFY_CONCURRENCY)
        self.requests = 0

    async def get(self, url: str) -> tuple[int, bytes, str]:
        async with self.gate:
            self.requests += 1
            try:
                response = await self.client.get(url)
            except httpx.HTTPError as error:
                return 0, type(error).__name__.encode(), ""
        return response.status_code, response.content, response.headers.get("content-type", "")

    async def stored(self, uploads: Sequence[Upload]) -> list[str]:
        """Problems with images that must be there: metadata, bytes and thumbnail (through the balancer)."""
        sample = random.Random(18).sample(list(uploads), min(DIRECT_SAMPLE, len(uploads)))
        jobs = [self._stored(upload, "lb", thumbnail=True) for upload in uploads]
        jobs += [self._stored(upload, name) for name in self.targets if name != "lb" for upload in sample]
        return [problem for problems in await asyncio.gather(*jobs) for problem in problems]

    async def _stored(self, upload: Upload, target: str, *, thumbnail: bool = False) -> list[str]:
        url = f"{self.targets[target]}{IMAGES_PATH}/{upload.image_id}"
        problems = []
        status, body, _ = await self.get(url)
        if status != 200:
            return [f"{target}: metadata of {upload.image_id} answered {status}"]
        metadata = json.loads(body)
        if metadata["checksum"] != upload.checksum or metadata["thumbnail_status"] != "ready":
            problems.append(
                f"{target}: metadata of {upload.image_id} says {metadata['checksum'][:12]}, thumbnail "
                f"{metadata['thumbnail_status']}"
            )
        status, body, _ = await self.get(url + "/file")
        if status != 200 or len(body) != upload.file_size or hashlib.sha256(body).hexdigest() != upload.checksum:
            problems.append(
                f"{target}: file of {upload.image_id} answered {status} with {len(body)} B, stored {upload.file_size} B"
            )
        if thumbnail:
            status, body, content_type = await self.get(url + "/thumbnail")
            if status != 200 or not body or not content_type.startswith("image/"):
                problems.append(f"{target}: thumbnail of {upload.image_id} answered {status} ({content_type})")
        return problems

    async def gone(self, uploads: Sequence[Upload]) -> list[str]:
        """Problems with deleted images: anything but 404 for metadata, file or thumbnail, from any target."""
        jobs = [
            self._gone(f"{base_url}{IMAGES_PATH}/{upload.image_id}{suffix}", name)
            for upload in uploads
            for name, base_url in self.targets.items()
            for suffix in ("", "/file", "/thumbnail")
        ]
        return [problem for problem in await asyncio.gather(*jobs) if problem]

    async def _gone(self, url: str, target: str) -> str:
        status, _, _ = await self.get(url)
        return "" if status == 404 else f"{target}: {url.split('/api/', 1)[1]} answered {status} after its delete"
