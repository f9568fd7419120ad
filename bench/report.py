"""From one run's results to the page `docs/performance.md`; the verdicts it shows come from targets.py."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import REPO_ROOT

Results = dict[str, Any]

# Every scenario a complete run produces (the smoke test checks for each).
SCENARIOS = (
    "metadata_cached",
    "starlette_json_ceiling",
    "file_local",
    "nginx_sendfile_ceiling",
    "file_local_accel",
    "file_s3",
    "naive_s3_read",
    "file_s3_5mb",
    "upload_200k",
    "upload_200k_nostrip",
    "upload_200k_duplicate",
    "upload_floor",
    "upload_webp",
    "webp_floor",
    "upload_heic",
    "heic_floor",
    "thumbnail_latency",
    "thumbnail_floor",
    "memory_5mb_uploads",
    "variant_cold_webp",
    "variant_webp_floor",
    "variant_cold_avif",
    "variant_avif_floor",
    "variant_warm",
    "original_warm",
    "variant_single_flight",
    "variant_single_flight_two_processes",
    "workers_upload_200k",
    "workers_upload_floor",
    "workers_thumbnail_latency",
    "workers_thumbnail_floor",
    "observability_metadata_off",
    "observability_metadata_on",
    "observability_upload_off",
    "observability_upload_on",
    "observability_scrapes",
    "scale_metadata_one",
    "scale_metadata_two",
    "scale_upload_one",
    "scale_upload_two",
)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    memory_gib = 0.0
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": " ".join(_first_line(["wrk", "-v"]).split()[:2]).replace("debian/", ""),
        "nginx": _first_line([_nginx(), "-v"]).removeprefix("nginx version: "),
    }


def _nginx() -> str:
    return (
        "nginx" if any(Path(p, "nginx").exists() for p in os.environ.get("PATH", "").split(":")) else "/usr/sbin/nginx"
    )


def _first_line(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not found"
    return (
        (completed.stdout + completed.stderr).strip().splitlines()[0] if (completed.stdout + completed.stderr) else ""
    )


def git_commit() -> str:
    """HEAD and whether the tree differs from it (read-only: no index refresh is written)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if status else "")


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("responses", "renders"):
        return f"{value:.0f}"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def _upload_lines(scenarios: Results) -> list[str]:
    """The upload scenarios' CPU, thumbnails and floors, beyond the table."""
    on, off, copies = (scenarios[name] for name in ("upload_200k", "upload_200k_nostrip", "upload_200k_duplicate"))
    jpeg_floor, webp_floor, heic_floor = (scenarios[name] for name in ("upload_floor", "webp_floor", "heic_floor"))
    webp, heic = scenarios["upload_webp"], scenarios["upload_heic"]
    backlogs = ", ".join(
        f"{name} {scenarios[name].get('thumbnail_backlog', '?')}"
        for name in ("upload_200k", "upload_200k_nostrip", "upload_webp", "upload_heic")
    )

    def cpu(scenario: Results) -> str:
        return _number(scenario.get("server_cpu_ms_per_request"), "ms")

    def floor_figures(floor: Results) -> str:
        return (
            f"{floor['processes']} plain loops, one process per core, no HTTP, database or cache: "
            f"{_number(floor['uploads_per_s'])} uploads/s, {_number(floor['cpu_ms_per_upload'], 'ms')} of CPU each"
        )

    return [
        f"- Server CPU per upload, unique 200 KB JPEGs: {cpu(on)} with stripping on, {cpu(off)} with it off "
        f"(req/s {_number(on['req_per_s'])} and {_number(off['req_per_s'])}; legs "
        f"{', '.join(_number(leg['req_per_s']) for leg in on.get('legs', []))} on and "
        f"{', '.join(_number(leg['req_per_s']) for leg in off.get('legs', []))} off); duplicates {cpu(copies)}; "
        f"WebP {cpu(webp)}; HEIC {cpu(heic)}. Each includes the thumbnails the server made in the window.",
        f"- Uploads kept their thumbnails up: still pending when the window closed: {backlogs} (a large backlog "
        "would mean thumbnail work was left outside the window).",
        "- Upload floor (the ceiling of scenario 3): the least work of one upload of the same JPEG (decode at "
        "the thumbnail's scale, SHA-256, durable write, thumbnail, JPEG encode, durable write) in "
        f"{floor_figures(jpeg_floor)} (bench/upload_floor.py). The 150/s target is absolute and moves with the "
        "machine's speed; the ratio moves less.",
        "- WebP and HEIC floors (13.2): open and decode the whole picture (as validation must), SHA-256, durable "
        f"write; no thumbnail. WebP: {floor_figures(webp_floor)}. HEIC: {floor_figures(heic_floor)}.",
    ]


def _variant_lines(scenarios: Results) -> list[str]:
    """The variant pass's figures beyond the table: latencies, where a render's time goes, single flight."""
    lines = []
    for image_format, shown in (("webp", "WebP"), ("avif", "AVIF")):
        served, floor = scenarios[f"variant_cold_{image_format}"], scenarios[f"variant_{image_format}_floor"]
        ratio = served["median_ms"] / floor["median_ms"] if floor["median_ms"] else 0
        encoder = ", ".join(f"{name} {value}" for name, value in floor["encoder"].items())
        lines.append(
            f"- Cold {served['width']} px {shown} variants ({served['samples']} first requests, one at "
            f"a time, each of a new 4000x3000 JPEG of {served['source_bytes'] / 1e6:.2f} MB; "
            f"{served['variant_bytes']:,} B each): answered in {_number(served['median_ms'], 'ms')} (median; "
            f"{_number(served['min_ms'], 'ms')} to {_number(served['max_ms'], 'ms')}), of which render and store in "
            f"the worker thread {_number(served['render_and_store_median_ms'], 'ms')}; "
            f"{_number(served['cpu_ms_per_render'], 'ms')} of server CPU each. The floor ({encoder}), run by run in "
            f"turn in the harness: {_number(floor['median_ms'], 'ms')} (median), "
            f"{_number(floor['cpu_ms_per_render'], 'ms')} of CPU ({floor['variant_bytes']:,} B); in time the server "
            f"takes {ratio:.2f}x the floor."
        )
    warm, original = scenarios["variant_warm"], scenarios["original_warm"]
    lines.append(
        f"- Warm variant: wrk on a stored `?w=1200&format=webp` ({warm['body_bytes']:,} B) and on an original "
        "uploaded with those very bytes, in four legs of half the duration (variant original original variant): "
        f"{_number(warm['req_per_s'])} and {_number(original['req_per_s'])} req/s, p99 "
        f"{_number(warm['p99_ms'], 'ms')} and {_number(original['p99_ms'], 'ms')}, server CPU per request "
        f"{_number(warm.get('server_cpu_ms_per_request'), 'ms')} and "
        f"{_number(original.get('server_cpu_ms_per_request'), 'ms')}. A plain GET of an original held near is "
        "answered before routing (NearCacheHitMiddleware), and so is a variant this process has served and "
        "holds in memory."
    )
    flights = [scenarios["variant_single_flight"], scenarios["variant_single_flight_two_processes"]]
    described = "; ".join(
        f"{flight['processes']} process{'es' if flight['processes'] > 1 else ''}: {flight['renders']} render"
        f"{'s' if flight['renders'] != 1 else ''} ("
        + (", ".join(f"{server} {count}" for server, count in flight["renders_by_server"].items()) or "none")
        + f"), statuses {flight['statuses']}, {flight['answered_alike']} of {flight['requests']} with the same "
        f"bytes, all answered in {_number(flight['seconds_until_answered'], 's')}"
        for flight in flights
    )
    lines.append(
        f"- Single flight: {flights[0]['requests']} concurrent first requests of `?w=600&format=webp` for a new "
        "content, on one server, then split by turns over two servers sharing database and storage; renders "
        f"counted from the servers' own log lines: {described}."
    )
    return lines


def _worker_lines(scenarios: Results) -> list[str]:
    """The worker tier's figures beyond the table: the split of the work, the backlog, queue latency, latency."""
    uploads, floor = scenarios["workers_upload_200k"], scenarios["workers_upload_floor"]
    latency, thumbnail_floor = scenarios["workers_thumbnail_latency"], scenarios["workers_thumbnail_floor"]
    return [
        f"- Worker tier (15, bench/worker_scenarios.py): {uploads['layout']} (uvicorn --workers "
        f"{uploads['api_processes']}, `python -m app.worker` with WORKER_PROCESSES={uploads['worker_processes']}), "
        "JOB_QUEUE=postgres on a database of its own, local storage, no variants pregenerated. Unique 200 KB "
        f"JPEG uploads, {uploads['connections']} connections: {_number(uploads['req_per_s'])} req/s, p50 "
        f"{_number(uploads['p50_ms'], 'ms')}, p99 {_number(uploads['p99_ms'], 'ms')}; CPU of all the layout's "
        f"processes {_number(uploads['server_cpu_ms_per_request'], 'ms')} per upload: "
        f"{_number(uploads['api_cpu_ms_per_upload'], 'ms')} in the API processes per upload, "
        f"{_number(uploads['worker_cpu_ms_per_thumbnail'], 'ms')} in the workers per thumbnail made in the "
        f"window; machine idle {_number(uploads['machine_idle_percent'], '%')}. Its floor, the upload loop of "
        "scenario 3 in two halves of the duration, right before and right after the uploads: "
        f"{_number(floor['uploads_per_s'])} uploads/s (halves "
        f"{', '.join(_number(half) for half in floor.get('halves_uploads_per_s', []))}), "
        f"{_number(floor['cpu_ms_per_upload'], 'ms')} of CPU each.",
        f"- Backlog and queue latency (15.1): {uploads['thumbnail_backlog']} thumbnails pending when the load "
        f"stopped, none {_number(uploads['backlog_drained_seconds'], 's')} later (the rows polled every 10 ms "
        "from the end of wrk's run; issue 15 sets 2 s, an absolute time). Enqueue to start of the "
        f"{uploads['queue_jobs']} jobs queued in the window (pgqueuer_log, `picked` minus `queued` per job): "
        f"p50 {_number(uploads['queue_wait_p50_ms'], 'ms')}, p99 {_number(uploads['queue_wait_p99_ms'], 'ms')}, "
        f"max {_number(uploads['queue_wait_max_ms'], 'ms')}.",
        f"- Thumbnail latency with the worker tier (15.2; {latency['samples']} uploads of the 4000x3000 JPEG "
        f"of scenario 4, one at a time, the row polled in the database every {latency['poll_interval_ms']:g} "
        f"ms): ready {_number(latency['median_after_queued_ms'], 'ms')} (median) after its job was queued, "
        f"{_number(latency['median_after_upload_ms'], 'ms')} after the 201 reached the client (max "
        f"{_number(latency['max_after_upload_ms'], 'ms')}), {_number(latency['median_end_to_end_ms'], 'ms')} "
        f"after the request started; the upload took {_number(latency['median_upload_ms'], 'ms')}, the job "
        f"was queued {_number(latency['queued_before_answer_median_ms'], 'ms')} before the 201 arrived and "
        f"waited {_number(latency['median_queue_wait_ms'], 'ms')} for a worker; failures {latency['failures']}. "
        f"Floor, run by run in turn: {_number(thumbnail_floor['floor_median_ms'], 'ms')} (fastest "
        f"{_number(thumbnail_floor['floor_min_ms'], 'ms')}).",
    ]


def _thumbnail_lines(scenarios: Results) -> list[str]:
    thumbs, floor = scenarios["thumbnail_latency"], scenarios["thumbnail_floor"]
    return [
        f"- Thumbnail latency ({thumbs['samples']} uploads of a 4000x3000 JPEG, "
        f"{thumbs['source_bytes'] / 1e6:.2f} MB, polled every {thumbs['poll_interval_ms']:g} ms): ready "
        f"{_number(thumbs['median_after_upload_ms'], 'ms')} (median) after the upload's response, "
        f"{_number(thumbs['median_end_to_end_ms'], 'ms')} after its request started; the upload itself took "
        f"{_number(thumbs['median_upload_ms'], 'ms')}; failures {thumbs['failures']}; "
        f"server peak RSS {_number(thumbs['peak_rss_mb'], 'MB')}.",
        f"- Thumbnail floor (same file, plain loop of {floor['runs']}): Pillow draft + thumbnail + JPEG encode "
        f"{_number(floor['floor_median_ms'], 'ms')} (fastest {_number(floor['floor_min_ms'], 'ms')}); "
        f"the app's own `render_thumbnail` "
        f"{_number(floor['render_thumbnail_median_ms'], 'ms')}.",
    ]


def _memory_lines(scenarios: Results) -> list[str]:
    memory = scenarios["memory_5mb_uploads"]
    return [
        f"- Memory ({memory['uploads']} concurrent uploads of {memory['file_bytes'] / 1e6:.2f} MB, fresh server "
        f"process): peak RSS {_number(memory['peak_rss_mb'], 'MB')} (from {_number(memory['rss_start_mb'], 'MB')} "
        f"at rest); statuses {memory['statuses']}; all thumbnails ready after "
        f"{_number(memory['seconds_until_thumbnails_ready'], 's')}.",
    ]


def _observability_lines(scenarios: Results) -> list[str]:
    """Issue 17's figures beyond the table: each side leg by leg, what the on server counted, its scrapes and logs."""
    scrapes = scenarios["observability_scrapes"]
    status, logged = scrapes["metrics_status"], scrapes["log_lines_during_legs"]

    def legs(scenario: Results) -> str:
        return ", ".join(_number(leg["req_per_s"]) for leg in scenario.get("legs", []))

    def cpu(scenario: Results) -> str:
        microseconds = scenario["server_cpu_us_per_request"]
        return _number(microseconds, "µs") if microseconds < 1000 else _number(microseconds / 1000, "ms")

    lines = []
    for name, shown in (("metadata", "Cached metadata"), ("upload", "Unique 200 KB JPEG uploads")):
        off, on = scenarios[f"observability_{name}_off"], scenarios[f"observability_{name}_on"]
        counted = on.get("metrics_counted_requests")
        lines.append(
            f"- {shown} with metrics and JSON logs off and on (17, bench/observability_scenarios.py, "
            f"{on['connections']} connections): {_number(off['req_per_s'])} and {_number(on['req_per_s'])} req/s "
            f"(legs {legs(off)} off, {legs(on)} on), p99 {_number(off['p99_ms'], 'ms')} and "
            f"{_number(on['p99_ms'], 'ms')}, server CPU per request {cpu(off)} and {cpu(on)}. The on "
            "server's own request counter rose by "
            + ("— (no metrics)" if counted is None else f"{counted:,}")
            + f" over its legs, whose measured windows had {on['requests']:,} (their warm-ups and the scrapes add "
            f"more); {on.get('scrapes_in_windows', 0)} scrapes fell inside those windows."
        )
    lines.append(
        f"- The on server's /metrics, scraped from the loopback every {scrapes['interval_s']:g} s for the whole "
        f"pass: {scrapes['scrapes']} scrapes, statuses {scrapes['statuses']}, median "
        f"{_number(scrapes['median_ms'], 'ms')}, max {_number(scrapes['max_ms'], 'ms')} (under the legs' load), "
        f"{scrapes['bytes']:,} B; {_number(scrapes.get('idle_scrape_cpu_ms'), 'ms')} of the server's CPU each "
        f"(scrapes of the idle server, before the legs). Before the legs /metrics answered {status['on']} on the "
        f"on server and {status['off']} on the off one"
        + (
            ""
            if status["on"] == 200
            else " (the on server served no metrics: the sides differ in LOG_FORMAT at most, and 17's targets "
            "miss, unmeasured)"
        )
        + f". Log lines written while the legs ran: {logged['off']} off (text), {logged['on']} on (JSON)."
    )
    return lines


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _scale_lines(scenarios: Results) -> list[str]:
    """Issue 18's figures beyond the table: each side leg by leg, and how the two processes shared the work."""

    def legs(scenario: Results) -> str:
        return ", ".join(_number(leg["req_per_s"]) for leg in scenario.get("legs", []))

    def cpu(scenario: Results) -> str:
        microseconds = scenario["server_cpu_us_per_request"]
        return _number(microseconds, "µs") if microseconds < 1000 else _number(microseconds / 1000, "ms")

    lines = []
    for name, shown in (("metadata", "Cached metadata"), ("upload", "Unique 200 KB JPEG uploads")):
        one, two = scenarios[f"scale_{name}_one"], scenarios[f"scale_{name}_two"]
        shares = ", ".join(f"{process} {share:.0%}" for process, share in two["cpu_share_by_process"].items())
        lines.append(
            f"- {shown} through nginx with one API process and with two (18, bench/scale_scenarios.py, "
            f"{one['connections']} connections): CPU per request of the API processes together {cpu(one)} and "
            f"{cpu(two)}; {_number(one['req_per_s'])} and {_number(two['req_per_s'])} req/s (legs {legs(one)} "
            f"one, {legs(two)} two) on the same two cores; p99 {_number(one['p99_ms'], 'ms')} and "
            f"{_number(two['p99_ms'], 'ms')}; the two processes' shares of their CPU: {shares}; machine idle "
            f"{_number(one['machine_idle_percent'], '%')} and {_number(two['machine_idle_percent'], '%')}. "
            f"System time {_share(one.get('system_share'))} and {_share(two.get('system_share'))} of that CPU, "
            f"{_number(one.get('context_switches_per_request'))} and "
            f"{_number(two.get('context_switches_per_request'))} context switches per request; api-2, idle through "
            f"the one-process legs, used {_number(one.get('idle_process_cpu_ms_per_s'), 'ms')} of CPU a second."
        )
    return lines


# The figures beyond the tables, each group shown when its pass ran (a run of `--only` has some).
_DETAILS = (
    ("upload_200k", _upload_lines),
    ("thumbnail_latency", _thumbnail_lines),
    ("memory_5mb_uploads", _memory_lines),
    ("variant_warm", _variant_lines),
    ("workers_upload_200k", _worker_lines),
    ("observability_scrapes", _observability_lines),
    ("scale_metadata_two", _scale_lines),
)


def markdown(results: Results) -> str:
    meta = results["meta"]
    box = meta["machine"]
    scenarios = results["scenarios"]
    lines = [
        "# Performance",
        "",
        "<!-- Generated by `make bench` (bench/harness.py). Do not edit by hand: re-run the benchmark. -->",
        "",
        "This page is written by `make bench` and is regenerated, not hand-edited: every figure and its",
        "reference come from one run on one machine, side by side, because only those ratios mean anything on",
        "shared, noisy machines. Targets are those of issue 5 (1-5), issue 13 (13.x, uploads of every format),",
        "issue 14 (14.x, variants: cold renders, warm variants, single flight), issue 15 (15.x, the job",
        "queue's worker tier: uploads, the backlog's drain and thumbnail latency with API and worker processes),",
        "issue 17 (17, what metrics and JSON logs cost: the same scenarios with them off and on) and issue 18",
        "(18, the API processes' CPU per request with one of them behind nginx and with two).",
        "",
        f"- Command: `{meta['command']}`",
        *([f"- Passes: {', '.join(meta['only'])} only (`--only`): a partial run"] if meta.get("only") else []),
        f"- Date: {meta['date']}",
        f"- Commit: `{meta['commit']}`",
        f"- Machine: {box['nproc']} cores, {box['cpu_model']}, {box['memory_gib']} GiB; Linux {box['kernel']}, "
        f"Python {box['python']}; {box['wrk']}; {box['nginx']}",
        f"- Load: wrk, {meta['threads']} threads, {meta['connections']} connections unless stated, "
        f"{meta['duration_s']} s measured after a {meta['warmup_s']} s warm-up, on the same cores as the server; "
        f"1-minute load average {meta['load_average']['start']} at the start, {meta['load_average']['end']} at the end "
        "(other work on a shared machine shows here).",
        "",
        "## Targets",
        "",
        "Ratio = figure ÷ reference (a ceiling, a floor, or the same scenario with one thing changed), both "
        "from this run.",
        "",
        "| figure | value | reference | ratio | target | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in results["verdicts"]:
        ceiling = f"{_number(row['ceiling'], row['unit'])} ({row['ceiling_name']})" if row["ceiling_name"] else "—"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "—"
        lines.append(
            f"| {row['figure']} | {_number(row['value'], row['unit'])} | {ceiling} | {ratio} | {row['target']} | "
            f"{'pass' if row['pass'] else '**miss**'} |"
        )
    lines += [
        "",
        "## Every scenario",
        "",
        "| scenario | req/s | p50 | p99 | errors | server peak RSS | server CPU per request | machine idle |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        scenario = scenarios.get(name)
        if scenario is None or scenario.get("kind") != "wrk":
            continue
        lines.append(
            f"| {name} (`{_UUID.sub('{id}', scenario['url_path'])}`, {scenario['connections']} conn.) | "
            f"{_number(scenario['req_per_s'])} | {_number(scenario['p50_ms'], 'ms')} | "
            f"{_number(scenario['p99_ms'], 'ms')} | {scenario['errors']} | "
            f"{_number(scenario['peak_rss_mb'], 'MB')} ({scenario['server']}) | "
            f"{_number(scenario.get('server_cpu_ms_per_request'), 'ms')} | "
            f"{_number(scenario.get('machine_idle_percent'), '%')} |"
        )
    lines.append("")
    for marker, details in _DETAILS:
        if marker in scenarios:
            lines += details(scenarios)
    lines += [
        "",
        "## Notes",
        "",
        "- Scenarios 1 and 2 ask for one image again and again, as a popular embed does: after the first "
        "request they are near-copy hits (ADR 0011), answered before FastAPI's routing from metadata and "
        "files each process keeps (invalidated over Redis pub/sub), which is why cached metadata can beat "
        "the bare Starlette app (that one routes and serialises every request). A request for an image "
        "not held near goes through Redis, the database and storage.",
        "- Scenario 5 runs on a freshly started server, so its peak is not inflated by what earlier scenarios "
        "left allocated. Peak RSS is VmRSS of the uvicorn process polled every 10 ms.",
        "- The S3 pass runs against moto's server (`moto_server`, Flask, threaded), which is itself the "
        "slowest part of that path; the naive baseline reads through the same moto.",
        "- `file_local_accel` is the production layout `FILE_DELIVERY=accel-redirect`: nginx in front, the "
        "app resolves the id and sets the headers, nginx sends the file. `presigned-redirect` hands the bytes "
        "to the object store itself; with moto standing in for S3 that would time moto, so it is tested, "
        "not timed here.",
        "- Where a target is missed, `bash bench/run.sh --profile` writes py-spy flame graphs to "
        "bench/results/ to show where the time goes.",
        "- Uploads are stripped of metadata and then hashed, and identical content is stored once (ADR 0013, "
        "0014): a body sent again is a duplicate that is neither decoded nor written. So every upload "
        "scenario but `upload_200k_duplicate` sends new content every time. Each image carries an ICC "
        "profile, as phone photos do, and wrk's script rewrites the date and time in the profile's header "
        "from a counter, each thread and each wrk run its own range (bench/wrk.py): stripping keeps the "
        "profile (it decides the colours), so the bytes stay new after stripping and decode exactly like "
        "the original. Before each unique scenario three stamped variants are uploaded and must get three "
        "checksums; after it, the database must hold as many distinct contents as images for its account, "
        "or the run fails. The thumbnail latency and memory scenarios upload stamped copies too.",
        "- What the upload scenarios send: `upload_200k` and `upload_200k_nostrip` a ~200 KB 4:3 JPEG with "
        "what a phone writes (EXIF with Make/Model, DateTimeOriginal, GPS and a 3 KB maker note, an XMP "
        "packet, an sRGB ICC profile), so stripping has real work; `upload_200k_duplicate` that file "
        "unstamped, stored with its thumbnail before the first request; `upload_webp` a lossy 1600x1200 "
        "WebP (~230 KB) and `upload_heic` a 4032x3024 4:2:0 HEIC (~2.8 MB), both with EXIF, XMP and ICC. "
        "The HEIC scenario uses 4 connections and runs twice as long as the others (a HEIC takes about half "
        "a second of CPU to decode).",
        "- Stripping on and off run on two servers started together for them (same database, storage and "
        "connections), in eight legs of half the duration, on off off on off on on off, each after the "
        "thumbnails of the one before are made: drift of the machine weighs on both alike, and a burst of "
        "other work lands on one leg of one side, not on a whole side. Each side's figures add up its four "
        "legs (p50 weighted by requests, p99 the largest); `legs` in the raw results has each.",
        "- Server CPU per request is the server process's user + system time (all threads, from /proc) over "
        "the measured window, divided by the requests answered in it; the window starts once the server is "
        "quiet after the warm-up, so it pays only for its own requests and the thumbnails it makes. The "
        "floors count their processes' CPU the same way.",
        "- The upload scenarios are the most sensitive to the machine: on these shared 2-core machines they "
        "moved by up to 10% between runs minutes apart, and creating files soon after many were deleted (a "
        "previous run's clean-up, a test run) costs ext4 extra work per new file. Their ratios to same-run "
        "figures move less with the machine than the rates do. Machines of the same kind differ in speed "
        "too: issue 5 measured the thumbnail floor at about 28 ms on its reference machine, so a larger floor "
        "above means a slower machine, on which 150 uploads/s asks for a larger share of the upload floor.",
        "- The variant pass (bench/variant_scenarios.py) runs on fresh servers of its own. 14.1 times the first "
        "request of a variant of new content, one at a time, and is judged on CPU like 13.2 (latency on a shared "
        "machine waits for other work's turn too; both are above). Its floor (bench/variant_floor.py) makes the "
        "very bytes the server makes, with the server's encoder settings, and runs in turn with it, request by "
        "request. 14.2 compares a stored variant with an original of the same bytes, so only the path differs. "
        "14.3 counts renders from the servers' own log lines (one per render), not from storage, where a second "
        "render would overwrite the first under the same key.",
        "- The workers pass (bench/worker_scenarios.py, issue 15) runs the job queue's production layout on a "
        "database of its own: uvicorn with 2 worker processes (WEB_CONCURRENCY's default in backend/Dockerfile) "
        "and `python -m app.worker` with 2 processes (WORKER_PROCESSES's default, one per core), on the same 2 "
        "cores as wrk, PostgreSQL and Redis. The defaults stand because measuring one worker process against two "
        "(2026-12-04, alternating runs) found no difference under load: the upload rate, the backlog and the CPU "
        "per thumbnail matched within the machine's noise, as the kernel shares the cores between the API's "
        "process group and the tier's (each a session of its own, as containers are a cgroup each), not between "
        "processes. With the API idle, two drained a backlog at 72 thumbnails/s with 2% of the machine idle, one "
        "at 64/s with 18% idle (upload floors 153 and 162/s at the time). CPU and RSS count every process of the "
        "layout "
        "together (both supervisors too). 15.1's drain is timed from the moment wrk stops (the requests it "
        "abandons still finish, and their rows count) until no image row is pending; queue latency is pgqueuer's "
        "own log, `picked` minus `queued` of each job queued in the window. 15.2 is timed from the job's "
        "`queued` entry, not from the 201: the job is queued once the row is committed, before the answer "
        "leaves, and a worker may start on it while the answer is on its way, which ready - 201 would leave "
        "out; both are above.",
        "- Issue 17's cost (bench/observability_scenarios.py) is measured as 13.1's stripping is: the cached "
        "metadata of the reads pass and the unique 200 KB JPEG uploads of the uploads pass, on two servers "
        "started together with that layout (one uvicorn process, local storage, the same database and Redis), "
        "one with METRICS_ENABLED=false and LOG_FORMAT=text, the other as in production (METRICS_ENABLED=true, "
        "LOG_FORMAT=json, ACCESS_LOG=false, the metrics in prometheus_client's multiprocess files as on a host "
        "of several processes), in legs of half the duration, off on on off off on on off for each scenario. "
        "Each side adds up its legs; both ratios are on ÷ off. The on server's /metrics is scraped every 5 s "
        "for the whole pass, three times as often as the usual 15 s interval, so the scrapes' cost is not "
        "understated (once a second would overstate it fifteenfold); the off server's legs share the cores "
        "with the scrapes of the idle on server (each scrape's CPU is above). A ratio counts only if the on "
        "server's own request counter rose by at least the requests wrk saw answered in its windows; if not, "
        "the metrics did not watch that path and its targets miss. X-Request-ID is no setting: both servers "
        "give every response one, so its cost is in neither ratio. Neither server has an OTEL_* variable (the "
        "harness drops a shell's): tracing off installs nothing on the request path (no middleware, no "
        "instrumentation; a stage's span is an empty context manager), so the off server is the tracing-off "
        "case as well and there is no third server to compare with.",
        "- Issue 18's cost (bench/scale_scenarios.py) is the API processes' CPU per request, summed over them, "
        "with one `python -m app` process behind nginx and with two: wall-clock throughput cannot show scaling "
        "when wrk, nginx, PostgreSQL, Redis and every process share two cores, and CPU per request can (a "
        "process that shares the work should not make each request dearer). One layout serves both sides: two "
        "API processes (WEB_CONCURRENCY=1 each), a worker tier of one job process (JOB_QUEUE=postgres, so the "
        "API processes make no thumbnails and the tier's CPU, the same work on both sides, is not counted), and "
        "nginx with a site balancing over api-1 alone and one over both (round robin, keep-alive connections to "
        "them); both sides go through the same nginx, so only the number of API processes differs. Separate "
        "processes rather than WEB_CONCURRENCY=2 on one port: that is how instances scale out, and uvicorn's "
        "shared socket leaves the split to the kernel's accept, which may give one process most of wrk's "
        "connections. The legs go one two two one, as 17's do; the two-process side counts only if each process "
        "did at least a quarter of its CPU and no leg had errors.",
        "",
        "Raw figures of the latest run: `bench/results/latest.json` (git-ignored).",
        "",
    ]
    return "\n".join(lines)
