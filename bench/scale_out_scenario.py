"""Issue 18's failure scenario: several instances on shared engines, under load, while parts of them die.

    backend/.venv/bin/python bench/scale_out_scenario.py [--duration SECONDS] [--report PATH]

nginx (scale_out_layout.py says how it is set up, and why) in front of two API processes (`python -m
app`, JOB_QUEUE=postgres, no thumbnail work), beside two worker tiers (`python -m app.worker`, one job
process each), on one PostgreSQL database, one Redis and one S3 endpoint (moto's server; STORAGE_BACKEND=
minio). Uploads, reads and deletes go through nginx for --duration seconds (scale_out_load.py) while:

  at 0.25 of it   api-1 is SIGKILLed and started again at once, on its port
  at 0.50         SLOW_PNGS big PNGs are uploaded (slow thumbnail jobs), and once SLOW_JOBS_RUNNING of
                  them run (within JOB_WAIT_SECONDS), worker-1's process group (supervisor, job process,
                  metrics server) is SIGKILLed and started again at once
  at 0.70         the rate-limit probe: 3 x RATE_LIMIT_PER_MINUTE uploads from one address, round robin
                  over api-1 and api-2 directly and the balancer; exactly the limit must be admitted

and the load goes on until both restarted members have been up AFTER_RESTART_SECONDS. Then the
checks of scale_out_checks.py run. The report (JSON) goes to standard output (or --report), a summary
to standard error; the exit status is 1 when a check failed, 0 when all held.

By default it needs what `make bench` needs (bench/database.py): PostgreSQL at BENCH_ADMIN_DATABASE_URL,
where it creates and migrates a database of its own and drops it afterwards, and Redis at
BENCH_REDIS_URL, where it keeps to a key prefix of its own and removes those keys afterwards; it starts
moto's S3 server itself. The test (backend/tests/integration/test_scale_out.py) passes its own engines
(--database-url, migrated; --redis-url; --s3-endpoint) and a --workdir for the logs.

It lives in bench/ because it is made of the harness's parts: services.py starts and stops its
processes (process groups, loopback ports, the pgids file of run.sh's safety net), images.py makes its
uploads, and the bench's `scale` pass runs the same layout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import redis
from minio import Minio

import images
import scale_out_checks as checks
from database import REDIS_URL, BenchDatabase
from scale_out_layout import (
    CONNECT_TIMEOUT_SECONDS,
    FAIL_TIMEOUT_SECONDS,
    NEXT_UPSTREAM_TRIES,
    Kill,
    Member,
    ScaleOutLayout,
)
from scale_out_load import Clock, Load, rate_limit_probe, slow_png
from services import BACKEND_DIR, Processes, clean_env

sys.path.insert(0, str(BACKEND_DIR))  # the backend is not installed as a package

API_KILL_AT = 0.25
WORKER_KILL_AT = 0.5
PROBE_AT = 0.7
AFTER_RESTART_SECONDS = 3.0
JOB_WAIT_SECONDS = 3.0  # how long worker-1's kill may wait for SLOW_JOBS_RUNNING jobs to run
SLOW_PNGS = 8  # uploaded right before worker-1's kill: twice the jobs one worker process runs at once
SLOW_JOBS_RUNNING = 3
RATE_LIMIT_PER_MINUTE = 20
PROBE_ADDRESS = "198.51.100.18"  # a documentation address (RFC 5737), one client behind the edge
REQUEST_TIMEOUT_SECONDS = 60
CLIENT_CONNECTIONS = 32
JWT_SECRET = "scale-out-secret-" + "x" * 40
S3_ACCESS_KEY = "scale-out"
S3_SECRET_KEY = "scale-out-secret"
UPLOAD_SIZE = (640, 480)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load at least (default 60)")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here, not to stdout")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and configuration (default: a temporary one)")
    parser.add_argument("--database-url", default=None, help="a migrated PostgreSQL database to use (asyncpg URL)")
    parser.add_argument("--redis-url", default=None, help=f"Redis to use (default {REDIS_URL})")
    parser.add_argument("--s3-endpoint", default=None, help="host:port of an S3 server (default: start moto's)")
    args = parser.parse_args()
    if args.duration < 8:
        parser.error("--duration must be at least 8 seconds: a kill and a restart take several")
    return args


class Scenario:
    """One run on given engines: start the layout, drive the load and the kills, check, report."""

    def __init__(
        self,
        processes: Processes,
        env: Mapping[str, str],
        *,
        duration: float,
        database_url: str,
        redis_url: str,
        s3_endpoint: str,
    ) -> None:
        self.processes = processes
        self.duration = duration
        self.database_url = database_url
        self.jobs_running_at_kill: int | None = None  # thumbnail jobs any worker held when worker-1 was killed
        self.run_id = uuid.uuid4().hex[:10]
        self.key_prefix = f"chitram-scale-{self.run_id}:"  # Redis: cache, limits and invalidations of this run
        self.bucket = f"chitram-scale-{self.run_id}"
        self.s3 = Minio(s3_endpoint, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, secure=False)
        self.image = images.photo_like_jpeg(*UPLOAD_SIZE, seed=18, metadata=images.phone_metadata_options)
        self.slow_pngs = [slow_png(number) for number in range(SLOW_PNGS)]
        self.env = {
            **env,
            "APP_ENV": "production",
            "DEBUG": "false",
            "JWT_SECRET_KEY": JWT_SECRET,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": self.key_prefix,
            "STORAGE_BACKEND": "minio",
            "MINIO_ENDPOINT": s3_endpoint,
            "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
            "MINIO_SECRET_KEY": S3_SECRET_KEY,
            "MINIO_BUCKET": self.bucket,
            "MINIO_SECURE": "false",
            "JOB_QUEUE": "postgres",
            "THUMBNAIL_WORKERS_ENABLED": "false",  # the worker tiers make every thumbnail
            "VARIANT_PREGENERATE": "",  # every job a thumbnail, whatever the default becomes
            "RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
            "FORWARDED_ALLOW_IPS": "127.0.0.1",  # the balancer's address, and the direct clients'
        }

    @property
    def dsn(self) -> str:
        return self.database_url.replace("+asyncpg", "", 1)

    def execute(self) -> dict[str, Any]:
        self.s3.make_bucket(self.bucket)
        layout = ScaleOutLayout(self.processes, self.env, api_count=2, worker_count=2)
        log(f"starting nginx, {len(layout.apis)} API processes and {len(layout.workers)} worker tiers")
        layout.start()
        log(f"balancer at {layout.sites['all']}; load for {self.duration:g} s")
        return asyncio.run(self.drive(layout))

    async def drive(self, layout: ScaleOutLayout) -> dict[str, Any]:
        api, worker = layout.apis[0], layout.workers[0]
        kills: list[Kill] = []
        clock = Clock()
        limits = httpx.Limits(max_connections=CLIENT_CONNECTIONS, max_keepalive_connections=CLIENT_CONNECTIONS)
        async with httpx.AsyncClient(
            base_url=layout.sites["all"], timeout=REQUEST_TIMEOUT_SECONDS, limits=limits
        ) as client:
            load = Load(client, self.image, clock)
            running = asyncio.create_task(load.run())
            await asyncio.gather(
                self.kill_and_restart(layout, api, API_KILL_AT * self.duration, clock, kills, None),
                self.kill_and_restart(layout, worker, WORKER_KILL_AT * self.duration, clock, kills, load),
            )
            await _sleep_until(clock, PROBE_AT * self.duration)
            targets = {member.name: member.base_url for member in layout.apis} | {"lb": layout.sites["all"]}
            log(f"rate-limit probe: {3 * RATE_LIMIT_PER_MINUTE} uploads from {PROBE_ADDRESS} over {', '.join(targets)}")
            probe = await rate_limit_probe(load, targets, limit=RATE_LIMIT_PER_MINUTE, address=PROBE_ADDRESS)
            back = max(clock.at(member.starts[-1].ready_at) for member in (api, worker))
            await _sleep_until(clock, max(self.duration, back + AFTER_RESTART_SECONDS))
            load.stop()
            await running
            load_seconds = clock()
        log(f"load stopped after {load_seconds:.1f} s: {load.statuses()}")
        # Read before the checks' own requests reach it directly.
        api_served = await asyncio.to_thread(layout.requests_served, api)
        return await self.check(layout, load, kills, clock, probe, load_seconds, api_served)

    async def kill_and_restart(
        self, layout: ScaleOutLayout, member: Member, at: float, clock: Clock, kills: list[Kill], load: Load | None
    ) -> None:
        """Kill `member` at `at` and start it again; with `load`, after slow thumbnail jobs have started."""
        await _sleep_until(clock, at)
        if load is not None:
            # Slow thumbnail jobs, and a moment when several run (their workers' claims on the rows are
            # live): the kill takes some down with it, and another worker must take their rows over.
            await load.upload_pngs(self.slow_pngs)
            deadline = clock() + JOB_WAIT_SECONDS
            self.jobs_running_at_kill = await checks.jobs_running(self.dsn)
            while self.jobs_running_at_kill < SLOW_JOBS_RUNNING and clock() < deadline:
                await asyncio.sleep(0.02)
                self.jobs_running_at_kill = await checks.jobs_running(self.dsn)
        kill = await asyncio.to_thread(layout.kill, member)
        kills.append(kill)
        log(f"{clock():.2f} s: SIGKILL to {member.name} ({', '.join(map(str, kill.pids))}), exit {kill.exit_status}")
        start = await asyncio.to_thread(layout.restart, member)
        log(f"{clock():.2f} s: {member.name} started again (pid {start.pid}), {start.ready_at - kill.at:.1f} s after")

    async def check(
        self,
        layout: ScaleOutLayout,
        load: Load,
        kills: Sequence[Kill],
        clock: Clock,
        probe: dict[str, Any],
        load_seconds: float,
        api_served: int | None,
    ) -> dict[str, Any]:
        api, worker = layout.apis[0], layout.workers[0]
        answered = [upload for upload in load.uploads if upload.status == 201]
        deleted = [upload for upload in answered if upload.deleted]
        stored = [upload for upload in answered if upload.delete_started is None]
        undecided = [upload for upload in answered if upload.delete_started is not None and not upload.deleted]
        log(f"waiting for the thumbnails of {len(stored)} images")
        thumbnails = await checks.wait_for_thumbnails(self.dsn, [upload.image_id or "" for upload in stored])
        worker_made = await asyncio.to_thread(layout.thumbnails_made, worker)
        rows = checks.failed_answers(load.answers, kills, clock)
        access = layout.access_lines()
        kill_summaries = [
            checks.kill_summary(kill, member, clock, rows, access, api_served if member is api else worker_made)
            for kill in kills
            for member in (api, worker)
            if member.name == kill.member
        ]
        targets = {"lb": layout.sites["all"]} | {member.name: member.base_url for member in layout.apis}
        log(f"verifying {len(stored)} stored and {len(deleted)} deleted images through {', '.join(targets)}")
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as client:
            verifier = checks.Verifier(client, targets)
            stored_problems = await verifier.stored(stored)
            gone_problems = await verifier.gone(deleted)
        unanswered = [upload for upload in load.uploads if upload.status == 0 or upload.status >= 500]
        rows_left = await checks.rows_by_address(self.dsn, [upload.address for upload in load.uploads])
        bucket = checks.bucket_audit(await asyncio.to_thread(self.object_keys), rows_left, deleted)
        findings = load.findings
        results = [
            checks.failures_check(rows),
            checks.check(
                "every upload answered 201 is stored, with the bytes its answer describes",
                stored_problems + [f"delete of {upload.image_id} never answered" for upload in undecided],
                f"{len(stored)} images, each through the balancer and a sample of up to {checks.DIRECT_SAMPLE} "
                "through each API process directly",
            ),
            checks.check(
                "every thumbnail is made",
                [f"{thumbnails['pending']} pending, {thumbnails['failed']} failed"]
                if thumbnails["pending"] or thumbnails["failed"] or thumbnails["rows"] != len(stored)
                else [],
                f"{thumbnails['rows']} rows ready {thumbnails['waited_s']} s after the load stopped "
                f"(bound {checks.THUMBNAIL_LIMIT_SECONDS:g} s)",
            ),
            checks.check(
                "no deleted image is served",
                gone_problems,
                f"{len(deleted)} deleted images: metadata, file and thumbnail 404 through every target",
            ),
            checks.check(
                "reads during the load saw no wrong bytes, no vanished image and no unexpected 4xx",
                findings.mismatched + findings.vanished + findings.unexpected,
                f"{sum(answer.kind in ('metadata', 'file') for answer in load.answers)} reads",
            ),
            checks.rate_limit_check(probe, [member.name for member in layout.apis]),
            checks.check(
                "every object a row names is in the bucket",
                bucket["named_but_missing"],
                f"{bucket['rows']} rows, {bucket['objects']} objects",
            ),
            checks.kills_check(kill_summaries, expected=2),
        ]
        report = {
            "ok": all(result.ok for result in results),
            "run": {
                "duration_s": self.duration,
                "load_seconds": round(load_seconds, 2),
                "layout": f"nginx + {len(layout.apis)} API processes + {len(layout.workers)} worker tiers of "
                "one job process; JOB_QUEUE=postgres; PostgreSQL, Redis, S3 (moto) shared",
                "balancer": {
                    "max_fails": 1,
                    "fail_timeout_s": FAIL_TIMEOUT_SECONDS,
                    "proxy_next_upstream": "error timeout",
                    "proxy_next_upstream_tries": NEXT_UPSTREAM_TRIES,
                    "proxy_connect_timeout_s": CONNECT_TIMEOUT_SECONDS,
                },
                "clients": load.counts,
                "upload_bytes": len(self.image),
                "rate_limit_per_minute": RATE_LIMIT_PER_MINUTE,
            },
            "requests": load.statuses(),
            "uploads": {
                "attempts": sum(upload.address != PROBE_ADDRESS for upload in load.uploads),
                "answered_201": len(answered),
                "deleted": len(deleted),
                "stored": len(stored),
                "mean_stored_bytes": round(sum(upload.file_size or 0 for upload in answered) / max(1, len(answered))),
            },
            "kills": kill_summaries,
            "failed_answers": rows,
            "thumbnails": thumbnails
            | {"made_by_restarted_worker": worker_made, "jobs_running_at_worker_kill": self.jobs_running_at_kill},
            "rate_limit": probe,
            "lost_answers": checks.lost_answers(unanswered, rows_left),
            "bucket": bucket,
            "deletes_answered_404": [
                {"ended": round(answer.ended, 3), "attempt": answer.attempt}
                | {kill.member: round(answer.ended - clock.at(kill.at), 3) for kill in kills}
                for answer in load.answers
                if answer.kind == "delete" and answer.status == 404
            ],
            "verification_requests": verifier.requests,
            "checks": [asdict(result) for result in results],
        }
        return report

    def object_keys(self) -> set[str]:
        return {item.object_name for item in self.s3.list_objects(self.bucket, recursive=True) if item.object_name}

    def forget_keys(self, redis_url: str) -> None:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            keys = list(client.scan_iter(match=self.key_prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def _sleep_until(clock: Clock, moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - clock()))


def log(message: str) -> None:
    print(f"scale-out: {message}", file=sys.stderr, flush=True)


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    lines = [f"requests: {json.dumps(report['requests'])}"]
    for kill in report["kills"]:
        lines.append(f"kill: {json.dumps(kill)}")
    lines.append(
        f"lost answers: {report['lost_answers']['uploads_without_answer']} uploads without an answer, "
        f"{report['lost_answers']['stored_all_the_same']} of them stored"
    )
    lines.append(f"bucket: {json.dumps(report['bucket'])}")
    lines.append(f"deletes answered 404: {json.dumps(report['deletes_answered_404'])}")
    for result in report["checks"]:
        lines.append(f"{'pass' if result['ok'] else 'FAIL'}  {result['name']}: {result['detail']}")
    return lines


def main() -> int:
    args = parse_args()

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"scale-out: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chitram-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    processes = Processes(workdir)
    env = clean_env()
    database = None
    redis_url = args.redis_url or REDIS_URL
    scenario = None
    report: dict[str, Any] | None = None
    try:
        database_url = args.database_url
        if database_url is None:
            database = BenchDatabase()
            database.create_and_migrate(env)
            database_url = database.url
        s3_endpoint = args.s3_endpoint
        if s3_endpoint is None:
            s3_endpoint = processes.moto("moto-s3").base_url.removeprefix("http://")
        scenario = Scenario(
            processes,
            env,
            duration=args.duration,
            database_url=database_url,
            redis_url=redis_url,
            s3_endpoint=s3_endpoint,
        )
        report = scenario.execute()
    finally:
        processes.stop_all()
        if database is not None:
            database.drop()
        if scenario is not None:
            scenario.forget_keys(redis_url)
        if report is None or not report["ok"]:
            log(f"logs kept in {workdir}")
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    if args.report is None:
        print(text)
    else:
        args.report.write_text(text)
    for line in summary_lines(report):
        log(line)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
