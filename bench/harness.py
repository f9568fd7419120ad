"""`make bench`: measure Chitram against this machine's ceilings in one run; write the table and raw JSON.

Run through `bash bench/run.sh [--duration SECONDS] [--profile] [--smoke] [--only PASS,...]`, which
installs wrk, nginx and py-spy first. Needs PostgreSQL and Redis (database.py says where). Everything it
starts binds 127.0.0.1 and is stopped at the end, and the whole run has a time budget.

The passes of a run, in order (a ceiling or floor is measured next to its figure, so both see the same
machine); `--only` runs some of them, and then writes no page, which shows complete runs only (`--doc -`
prints the part it measured):
  reads     bare Starlette and nginx as ceilings, then from local storage: 1 cached metadata, 2 file
            (and behind nginx);
  uploads   uploads to local storage on two fresh servers (upload_scenarios.py): 3 unique 200 KB JPEGs
            with stripping on and off, duplicates, unique WebP and HEIC, each with its floor in plain
            loops; then 4 thumbnail latency (+ its floor) on the stripping server;
  observability
            issue 17's cost (observability_scenarios.py): 1's cached metadata and 3's unique 200 KB
            uploads on two servers, metrics and JSON logs off and on, leg by leg in turn;
  scale     issue 18's per-request cost (scale_scenarios.py): 1's cached metadata and 3's unique 200 KB
            uploads through nginx, with one API process (`python -m app`) behind it and with two, leg
            by leg in turn; CPU per request of the API processes together;
  memory    a fresh server for 5, 50 concurrent 5 MB uploads;
  variants  fresh servers for variants (variant_scenarios.py): cold 600 px WebP and AVIF renders with
            their floor, a warm variant against an original of the same bytes, single flight;
  workers   the job queue's production layout (worker_scenarios.py), on a database of its own: API
            processes that queue thumbnail jobs and a worker tier that runs them; unique 200 KB
            uploads with their floor, the backlog's drain, queue latency, thumbnail latency (+ floor);
  s3        S3 through moto: 2 file through S3, a naive whole-object read, and a 5 MB object for memory.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from minio import Minio

import client_scenarios
import images
import observability_scenarios
import profiles
import report
import scale_scenarios
import targets
import thumbnail_floor
from database import REDIS_URL, BenchDatabase, flush_redis
from observability_scenarios import ObservabilityPass
from scale_scenarios import ScalePass
from services import BACKEND_DIR, BENCH_DIR, REPO_ROOT, Processes, Service, clean_env
from upload_scenarios import UploadBodies, UploadPass
from variant_scenarios import VariantPass
from worker_scenarios import WorkerPass
from wrk import CONNECTIONS, THREADS, WrkRun, run_wrk

sys.path.insert(0, str(BACKEND_DIR))  # the backend is not installed as a package

JWT_SECRET = "bench-secret-" + "x" * 40  # production settings demand 32+ characters
RAISED_RATE_LIMIT = "1000000"
S3_BUCKET = "chitram-bench"
NAIVE_BUCKET = "naive-bench"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # MAX_FILE_SIZE_MB's default
PROFILED_SCENARIOS = (
    "metadata_cached",
    "file_local",
    "file_s3",
    "upload_200k",
    "upload_200k_nostrip",
    "upload_200k_duplicate",
    "upload_webp",
    "upload_heic",
    "variant_warm",
    "original_warm",
    "workers_upload_200k",
)
PASSES = ("reads", "uploads", "observability", "scale", "memory", "variants", "workers", "s3")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per wrk scenario (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up seconds before each (default 2; 0 with --smoke)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="5 thumbnails (of each queue) and 5 big uploads instead of 20 and 50, 2 cold variants of each "
        "format instead of 20",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record the server during scenarios 1-3, the uploads (and the worker tier's) and the warm variant",
    )
    parser.add_argument(
        "--only",
        type=_passes,
        default=None,
        metavar="PASS[,PASS]",
        help=f"run only these passes ({', '.join(PASSES)}); writes no page",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument(
        "--doc",
        default=None,
        help="where to write the Markdown page; '-' for standard output (default docs/performance.md; "
        "nowhere with --profile, whose figures the profiler perturbs, or with --only)",
    )
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)  # as typed, passed in by run.sh
    args = parser.parse_args()
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.warmup is None:
        args.warmup = 0 if args.smoke else 2
    if args.only is not None and args.doc not in (None, "-"):
        parser.error("--only measures part of the suite; a page is written by complete runs only")
    if args.doc is None and not args.profile and args.only is None:
        args.doc = str(REPO_ROOT / "docs" / "performance.md")
    return args


def _passes(value: str) -> tuple[str, ...]:
    """`--only`'s value: pass names, comma-separated, run in the suite's own order."""
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(PASSES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"passes are {', '.join(PASSES)}; not {', '.join(unknown) or 'none'}")
    return tuple(name for name in PASSES if name in names)


def port_of(service: Service) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


def nginx_worker_pid(master: Service) -> int:
    """nginx's one worker: the process that serves, and whose RSS counts."""
    for _ in range(50):
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    return master.pid


class Run:
    """One benchmark run: its settings, its processes and the results gathered so far."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.processes = Processes(workdir)
        self.database = BenchDatabase()
        # Pass 3's own: originals are stored once per content, and a row of pass 1 naming the same
        # content would make the S3 server share an object that only local storage holds.
        self.s3_database = BenchDatabase()
        # The workers pass's own: pgqueuer's tables then hold its jobs only, and no row of another pass
        # is pending while it times the backlog.
        self.workers_database = BenchDatabase()
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.env = clean_env()
        self.load_at_start = 0.0

    # -- helpers -----------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    def app_env(self, **overrides: str) -> dict[str, str]:
        return {
            **self.env,
            "APP_ENV": "production",
            "DEBUG": "false",
            "JWT_SECRET_KEY": JWT_SECRET,
            "DATABASE_URL": self.database.url,
            "REDIS_URL": REDIS_URL,
            "RATE_LIMIT_PER_MINUTE": RAISED_RATE_LIMIT,
            "AUTH_RATE_LIMIT_PER_MINUTE": RAISED_RATE_LIMIT,
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            **overrides,
        }

    def start_chitram(
        self, name: str, *, log_config: Path | None = None, workers: int = 1, **overrides: str
    ) -> Service:
        return self.processes.uvicorn(
            name,
            "app.main:app_factory",
            env=self.app_env(**overrides),
            app_dir=BACKEND_DIR,
            ready_path="/health",
            log_config=log_config,
            workers=workers,
        )

    def wrk(
        self,
        name: str,
        server: Service,
        path: str,
        *,
        measured_pids: Sequence[int] | None = None,
        measured_name: str | None = None,
        duration: int | None = None,
        warmup: int | None = None,
        leg: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Run one wrk scenario and keep its figures (and profile, for the profiled scenarios).

        wrk drives `server`; RSS and CPU are those of processes `measured_pids` together (nginx's worker,
        the app behind a proxy, every process of a layout; named `measured_name`) if given, else of
        `server`. A `leg` (numbered from 1) is one of several runs of a scenario: its figures are
        returned, not kept, and only the first is profiled.
        """
        profiling = self.args.profile and name in PROFILED_SCENARIOS and name not in self.profiles
        folded = self.args.results_dir / f"{name}.folded" if profiling else None
        duration = duration or self.args.duration
        label = name if leg is None else f"{name} (leg {leg})"
        self.log(f"{label}: wrk {path} for {duration} s" + (" (py-spy recording)" if profiling else ""))
        figures = run_wrk(
            WrkRun(
                url=server.base_url + path,
                duration=duration,
                warmup=self.args.warmup if warmup is None else warmup,
                **options,
            ),
            workdir=self.workdir,
            name=name if leg is None else f"{name}-leg{leg}",
            server_pids=measured_pids or [server.pid],
            profile_to=folded,
        )
        figures["server"] = measured_name or server.name
        if leg is None:
            self.scenarios[name] = figures
        self.log(
            f"{label}: {figures['req_per_s']:,.0f} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"errors {figures['errors']}, server CPU {figures['server_cpu_ms_per_request']} ms/request, "
            f"peak RSS {figures['peak_rss_mb']} MB"
        )
        if folded is not None and folded.exists():
            self.profiles[name] = profiles.summarise(folded)
            profiles.flamegraph_svg(folded, folded.with_suffix(".svg"), title=f"Chitram, {name}")
        return figures

    def wait_for_thumbnails(self, limit_seconds: float = 120) -> dict[str, Any]:
        """Let the thumbnail backlog of an upload scenario drain before anything else is timed.

        The backlog says whether thumbnails kept up with the uploads: work left over after the window
        was not paid for inside it, so a large backlog would flatter the upload rate.
        """
        started = time.monotonic()
        deadline = started + limit_seconds
        backlog = pending = self.database.pending_thumbnails()
        while pending and time.monotonic() < deadline:
            time.sleep(0.2)
            pending = self.database.pending_thumbnails()
        if pending:
            self.log(f"warning: {pending} thumbnails still pending after {limit_seconds:g} s")
        return {"thumbnail_backlog": backlog, "backlog_drained_seconds": round(time.monotonic() - started, 2)}

    # -- the run -----------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        self.log(f"work directory {self.workdir}; load average {os.getloadavg()[0]:.2f}")
        self.load_at_start = os.getloadavg()[0]
        self.database.create_and_migrate(self.env)
        flush_redis()
        passes: dict[str, Callable[[], None]] = {
            "reads": self.reads_pass,
            "uploads": self.uploads_pass,
            "observability": self.observability_pass,
            "scale": self.scale_pass,
            "memory": self.memory_pass,
            "variants": self.variants_pass,
            "workers": self.workers_pass,
            "s3": self.s3_pass,
        }
        for name in self.args.only or PASSES:
            passes[name]()
        self.processes.stop_all()
        return self.results()

    # The images are made when a pass first needs them, so that `--only` makes only its own.

    @functools.cached_property
    def file_500k(self) -> bytes:
        return images.jpeg_near(500_000, seed=500)

    @functools.cached_property
    def big_5mb(self) -> bytes:
        # An ICC profile and nothing else: each of scenario 5's uploads can be new content (stamped),
        # and stripping leaves the file as it is, so the S3 pass can compare downloads byte for byte.
        return images.jpeg_near(5_000_000, seed=5000, at_most=MAX_UPLOAD_BYTES - 1024, metadata=images.icc_only_options)

    @functools.cached_property
    def thumbnail_source(self) -> bytes:
        return images.thumbnail_source_jpeg()

    def reads_pass(self) -> None:
        """Ceilings without data of their own, then reads from local storage (1, 2)."""
        file_500k = self.file_500k
        self.log(f"reads: {len(file_500k):,} B")
        starlette = self.processes.uvicorn(
            "starlette-ceiling", "ceiling_apps:starlette_json", env=self.env, app_dir=BENCH_DIR, ready_path="/metadata"
        )
        nginx_root = self.workdir / "nginx-root"
        nginx_root.mkdir()
        (nginx_root / "file-500k.jpg").write_bytes(file_500k)
        nginx = self.processes.nginx("nginx-ceiling", nginx_root)

        chitram = self.start_chitram(
            "chitram-local", STORAGE_BACKEND="local", LOCAL_STORAGE_PATH=str(self.workdir / "images")
        )
        with httpx.Client(base_url=chitram.base_url, timeout=30) as client:
            token = client_scenarios.register(client).token
            image = client_scenarios.upload(client, token, file_500k, filename="file-500k.jpg")
            client_scenarios.warm_metadata_cache(client, image["id"])
            client_scenarios.check_download(client, f"/api/v1/images/{image['id']}/file", file_500k)

            self.wrk("metadata_cached", chitram, f"/api/v1/images/{image['id']}")
            self.wrk("starlette_json_ceiling", starlette, "/metadata")
            self.wrk("file_local", chitram, f"/api/v1/images/{image['id']}/file")
            self.wrk("nginx_sendfile_ceiling", nginx, "/file-500k.jpg", measured_pids=[nginx_worker_pid(nginx)])

            # Production layout: nginx in front, the app checks the id and names the file, nginx sends it.
            accel_app = self.start_chitram(
                "chitram-accel",
                STORAGE_BACKEND="local",
                LOCAL_STORAGE_PATH=str(self.workdir / "images"),
                FILE_DELIVERY="accel-redirect",
            )
            accel_front = self.processes.nginx(
                "nginx-accel", self.workdir / "images", accel_upstream=port_of(accel_app)
            )
            file_path = f"/api/v1/images/{image['id']}/file"
            client_scenarios.check_download(httpx.Client(base_url=accel_front.base_url), file_path, file_500k)
            self.wrk(
                "file_local_accel", accel_front, file_path, measured_pids=[accel_app.pid], measured_name=accel_app.name
            )
            self.processes.stop(accel_front)
            self.processes.stop(accel_app)
        for service in (chitram, starlette, nginx):
            self.processes.stop(service)

    def uploads_pass(self) -> None:
        """Uploads to local storage (upload_scenarios.py), then thumbnail latency on the same server (3, 4, 13).

        The floors' and servers' files (~1 GB per 10 s of scenarios) stay in the work directory until
        run.sh removes it at the end: deleting thousands of files would slow the next new ones.
        """
        thumbnail_source = self.thumbnail_source
        upload_bodies = UploadBodies.make()
        self.log(f"uploads: {upload_bodies.describe()}; thumbnails of a 4000x3000 {len(thumbnail_source):,} B")
        chitram, account = UploadPass(self, upload_bodies).execute()
        self.log("thumbnail floor and latency")
        runs = 5 if self.args.smoke else 20
        self.scenarios["thumbnail_floor"] = thumbnail_floor.measure(thumbnail_source, runs)
        with httpx.Client(base_url=chitram.base_url, timeout=30) as client:
            self.scenarios["thumbnail_latency"] = client_scenarios.thumbnail_latency(
                client, account.token, thumbnail_source, samples=runs, server_pid=chitram.pid
            )
        self.processes.stop(chitram)

    def observability_pass(self) -> None:
        """What metrics and JSON logs cost (observability_scenarios.py): two fresh servers, off and on."""
        ObservabilityPass(self, self.file_500k).execute()

    def scale_pass(self) -> None:
        """Issue 18: CPU per request of the API processes, one behind nginx and two (scale_scenarios.py)."""
        ScalePass(self, self.file_500k).execute()

    def memory_pass(self) -> None:
        """Scenario 5 on a fresh process: its peak is not inflated by what earlier scenarios allocated."""
        big_5mb = self.big_5mb
        uploads = 5 if self.args.smoke else 50
        self.log(f"memory: {uploads} concurrent uploads of {len(big_5mb):,} B")
        chitram = self.start_chitram(
            "chitram-memory", STORAGE_BACKEND="local", LOCAL_STORAGE_PATH=str(self.workdir / "images")
        )
        with httpx.Client(base_url=chitram.base_url, timeout=30) as client:
            token = client_scenarios.register(client).token
        self.scenarios["memory_5mb_uploads"] = client_scenarios.memory_under_big_uploads(
            chitram.base_url, token, big_5mb, uploads, server_pid=chitram.pid
        )
        self.log(f"memory: {self.scenarios['memory_5mb_uploads']}")
        self.processes.stop(chitram)

    def variants_pass(self) -> None:
        """Variants on fresh servers (variant_scenarios.py), from the 4000x3000 JPEG of scenario 4."""
        VariantPass(self, self.thumbnail_source).execute()

    def workers_pass(self) -> None:
        """The job queue's worker tier (worker_scenarios.py) on a database of its own, fresh and migrated."""
        flush_redis()
        self.workers_database.create_and_migrate(self.env)
        WorkerPass(self, self.workers_database, self.thumbnail_source).execute()

    def s3_pass(self) -> None:
        """S3 through moto's server, with a database of its own (one storage per database)."""
        file_500k, big_5mb = self.file_500k, self.big_5mb
        self.log(f"s3: {len(file_500k):,} B and {len(big_5mb):,} B")
        flush_redis()
        self.s3_database.create_and_migrate(self.env)
        moto = self.processes.moto("moto-s3")
        endpoint = moto.base_url.removeprefix("http://")
        s3 = Minio(endpoint, access_key="bench", secret_key="bench-secret", secure=False, region="us-east-1")
        s3.make_bucket(NAIVE_BUCKET)
        for key, body in (("file-500k.jpg", file_500k), ("file-5mb.jpg", big_5mb)):
            s3.put_object(NAIVE_BUCKET, key, io.BytesIO(body), len(body), content_type="image/jpeg")
        chitram = self.start_chitram(
            "chitram-s3",
            STORAGE_BACKEND="minio",
            MINIO_ENDPOINT=endpoint,
            MINIO_ACCESS_KEY="bench",
            MINIO_SECRET_KEY="bench-secret",
            MINIO_BUCKET=S3_BUCKET,
            MINIO_SECURE="false",
            DATABASE_URL=self.s3_database.url,
        )
        naive = self.processes.uvicorn(
            "naive-s3",
            "ceiling_apps:naive_s3",
            env={**self.env, "BENCH_S3_ENDPOINT": endpoint, "BENCH_S3_BUCKET": NAIVE_BUCKET},
            app_dir=BENCH_DIR,
            ready_path="/health",
        )
        with httpx.Client(base_url=chitram.base_url, timeout=60) as client:
            token = client_scenarios.register(client).token
            small = client_scenarios.upload(client, token, file_500k, filename="file-500k.jpg")
            large = client_scenarios.upload(client, token, big_5mb, filename="file-5mb.jpg")
            client_scenarios.check_download(client, f"/api/v1/images/{small['id']}/file", file_500k)
            client_scenarios.check_download(client, f"/api/v1/images/{large['id']}/file", big_5mb)
        with httpx.Client(base_url=naive.base_url, timeout=60) as client:
            client_scenarios.check_download(client, "/objects/file-500k.jpg", file_500k)
        self.wrk("file_s3", chitram, f"/api/v1/images/{small['id']}/file")
        self.wrk("naive_s3_read", naive, "/objects/file-500k.jpg")
        self.wrk("file_s3_5mb", chitram, f"/api/v1/images/{large['id']}/file", timeout_seconds=30)
        self.processes.stop(chitram)
        self.processes.stop(naive)
        self.processes.stop(moto)

    def results(self) -> dict[str, Any]:
        results: dict[str, Any] = {
            "meta": {
                "command": self.args.command or "bash bench/run.sh " + shlex.join(sys.argv[1:]),
                "date": report.now_utc(),
                "commit": report.git_commit(),
                "machine": report.machine(),
                "load_average": {"start": round(self.load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
                "duration_s": self.args.duration,
                "warmup_s": self.args.warmup,
                "threads": THREADS,
                "connections": CONNECTIONS,
                "smoke": self.args.smoke,
                "profile": self.args.profile,
                "only": list(self.args.only) if self.args.only else None,
            },
            "scenarios": self.scenarios,
        }
        results["verdicts"] = targets.verdicts(results)
        if self.profiles:
            results["profiles"] = self.profiles
        return results

    def cleanup(self) -> None:
        self.processes.stop_all()
        for database in (self.database, self.s3_database, self.workers_database):
            try:
                database.drop()
            except Exception as error:
                self.log(f"could not drop {database.name}: {error}")
        try:
            flush_redis()
        except Exception as error:
            self.log(f"could not flush Redis: {error}")


def keep_logs(workdir: Path, results_dir: Path) -> None:
    """A failed run's server and wrk logs, kept before run.sh removes the work directory."""
    kept = results_dir / f"failed-{time.strftime('%Y%m%d-%H%M%S')}"
    kept.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        shutil.copy(log, kept / log.name)
        print(f"--- {log.name} (last lines) ---\n{log.read_text(errors='replace')[-1500:]}", file=sys.stderr)
    print(f"bench: logs of the failed run kept in {kept}", file=sys.stderr)


def time_budget_seconds(args: argparse.Namespace) -> int:
    """An upper bound for the whole run: 20 wrk runs (one twice as long), 6 floors, set-up, thumbnails, memory.

    The variant pass's cold renders add about three minutes on a busy 2-core machine: 2 x 20 renders of
    each format, half of them by the floor, AVIF the slowest at up to 1.5 s each. The workers pass adds
    a database, a layout's start and a backlog's drain (allowed a minute at most). The observability
    and scale passes' legs are bounded on their own.
    """
    return int(
        600
        + 24 * (args.duration + args.warmup + 20)
        + observability_scenarios.budget_seconds(args)
        + scale_scenarios.budget_seconds(args)
    )


def main() -> int:
    args = parse_args()
    args.results_dir.mkdir(parents=True, exist_ok=True)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"bench: stopped by signal {signum}")

    def out_of_time(signum: int, frame: object) -> None:
        raise TimeoutError(f"bench: the run took longer than {time_budget_seconds(args)} s")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(time_budget_seconds(args))

    workdir = Path(os.environ.get("BENCH_WORKDIR") or tempfile.mkdtemp(prefix="chitram-bench-"))
    run = Run(args, workdir)
    try:
        results = run.execute()
    except BaseException:
        keep_logs(workdir, args.results_dir)
        raise
    finally:
        signal.alarm(0)
        run.cleanup()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "smoke" if args.smoke else "profile" if args.profile else "partial" if args.only else "bench"
    raw = json.dumps(results, indent=2)
    (args.results_dir / f"{kind}-{stamp}.json").write_text(raw)
    (args.results_dir / f"{kind}-latest.json").write_text(raw)
    if kind == "bench":
        (args.results_dir / "latest.json").write_text(raw)
    if "profiles" in results:
        summary = args.results_dir / f"{kind}-profiles.txt"
        summary.write_text(profiles.render_text(results["profiles"]))
        run.log(f"profile summaries in {summary}; flame graphs in {args.results_dir}/<scenario>.svg")
    if args.doc == "-":
        sys.stdout.write(report.markdown(results))
    elif args.doc is not None:
        Path(args.doc).write_text(report.markdown(results))
        run.log(f"wrote {args.doc}")
    run.log(f"raw results in {args.results_dir / f'{kind}-latest.json'}")
    # With the page on standard output, the summary goes beside it, not into it.
    summary = sys.stderr if args.doc == "-" else sys.stdout
    for row in results["verdicts"]:
        ratio = f" ratio {row['ratio']:.2f}" if row["ratio"] is not None else ""
        verdict = "pass" if row["pass"] else "MISS"
        print(
            f"{verdict:4}  {row['figure']}: {row['value']:g} {row['unit']}{ratio}  (target {row['target']})",
            file=summary,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
