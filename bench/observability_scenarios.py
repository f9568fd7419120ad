"""The observability pass (issue 17): what Prometheus metrics and JSON logs cost the requests they watch.

Two servers started together for this pass, each as the reads and uploads passes start theirs (one
uvicorn process, APP_ENV=production, local storage in the run's `images` folder, the run's database
and Redis), that differ only in issue 17's settings:

  chitram-observability-off  METRICS_ENABLED=false, LOG_FORMAT=text
  chitram-observability-on   as in production: METRICS_ENABLED=true, LOG_FORMAT=json, ACCESS_LOG=false,
                             and PROMETHEUS_MULTIPROC_DIR (a fresh folder), so its metrics live in
                             prometheus_client's multiprocess files as on a host of several processes;
                             its /metrics is scraped from the loopback every 5 s for the whole pass

Neither has an OTEL_* variable (the harness's clean_env drops a shell's): tracing is off on both, and
off it installs nothing on the request path, so the off server is the tracing-off case too and there
is no third server to compare with.

  observability_metadata_off, _on  the reads pass's metadata_cached: one image's metadata held near,
                                   32 connections
  observability_upload_off, _on    the uploads pass's upload_200k: unique ~200 KB phone JPEGs,
                                   8 connections, each leg after the thumbnails of the one before
  observability_scrapes            the scrapes of the on server's /metrics, and the log lines each
                                   server wrote while the legs ran

Each scenario runs in rounds of two legs of half the duration, off on, then on off, and so on (four
rounds; two with --smoke), as the uploads pass pairs stripping on and off: drift of the machine weighs
on both sides alike, and a burst of other work lands on one leg, not on a whole side. A side's figures
add up its legs (wrk.combine_legs). The on server's request counter (its scrapes' own requests left
out) is read before a scenario's first leg and, once it has settled, after its last: metrics that did
not count at least the requests wrk saw answered in the on server's windows measured nothing of that
path, and the pass's targets (targets.py) then miss rather than pass unmeasured.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx

import client_scenarios
import images
from services import CpuReading, Service
from upload_scenarios import UPLOAD_CONNECTIONS
from wrk import combine_legs, wait_for_quiet

if TYPE_CHECKING:
    import argparse

    from harness import Run

OFF, ON = "off", "on"
ROUNDS = 4
SMOKE_ROUNDS = 2
# Prometheus is commonly set to scrape every 15 s; three times as often keeps the scrapes' share of
# the cost from being understated, where once a second would overstate it fifteenfold.
SCRAPE_INTERVAL_SECONDS = 5.0
METRICS_PATH = "/metrics"
# Labels up to the line's last brace: a route template has braces of its own ("/api/v1/images/{image_id}").
REQUESTS_COUNTER = re.compile(r"^chitram_http_requests_total(\{.*\})?[ \t]+(\S+)", re.MULTILINE)
SCRAPE_ROUTE_LABEL = f'route="{METRICS_PATH}"'
# A process may add its requests to the counter in batches (once a second, say): the counter is read
# again until two readings this far apart agree.
SETTLE_SECONDS = 1.5
SETTLE_READINGS = 6
IDLE_SCRAPES = 10  # scrapes of the idle on server, timed for their CPU before the legs
METADATA, UPLOAD = "observability_metadata", "observability_upload"
SCRAPES = "observability_scrapes"


def budget_seconds(args: argparse.Namespace) -> int:
    """An upper bound for the pass: two servers' start, and every leg with its quiet wait and thumbnails."""
    legs = 2 * 2 * (SMOKE_ROUNDS if args.smoke else ROUNDS)
    return int(120 + legs * (max(1, args.duration // 2) + 15) + 4 * args.warmup)


def requests_counted(metrics: str) -> float:
    """chitram_http_requests_total summed over its label sets but /metrics's own, from the Prometheus text format."""
    return sum(float(value) for labels, value in REQUESTS_COUNTER.findall(metrics) if SCRAPE_ROUTE_LABEL not in labels)


class MetricsScraper:
    """Scrapes a server's /metrics every SCRAPE_INTERVAL_SECONDS in a thread, as Prometheus would."""

    def __init__(self, server: Service) -> None:
        self.url = server.base_url + METRICS_PATH
        self.scrapes: list[dict[str, Any]] = []  # started at (Unix time), status, ms, bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started_at, started = time.time(), time.perf_counter()
                try:
                    response = client.get(self.url)
                    status, size = response.status_code, len(response.content)
                except httpx.HTTPError:
                    status, size = 0, 0
                milliseconds = (time.perf_counter() - started) * 1000
                self.scrapes.append({"at": started_at, "status": status, "ms": milliseconds, "bytes": size})
                self._stop.wait(SCRAPE_INTERVAL_SECONDS)

    def __enter__(self) -> MetricsScraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def inside(self, windows: list[tuple[float, float]]) -> int:
        """How many scrapes started inside these measured windows (start, end; Unix time)."""
        return sum(any(start <= scrape["at"] <= end for start, end in windows) for scrape in self.scrapes)

    def summary(self) -> dict[str, Any]:
        times = [scrape["ms"] for scrape in self.scrapes if scrape["status"] == 200]
        return {
            "interval_s": SCRAPE_INTERVAL_SECONDS,
            "scrapes": len(self.scrapes),
            "statuses": dict(Counter(str(scrape["status"]) for scrape in self.scrapes)),
            "median_ms": round(statistics.median(times), 2) if times else None,
            "max_ms": round(max(times), 2) if times else None,
            "bytes": self.scrapes[-1]["bytes"] if self.scrapes else 0,
        }


class ObservabilityPass:
    """Both scenarios, off and on in turn, on two servers this pass starts and stops."""

    def __init__(self, run: Run, metadata_image: bytes) -> None:
        self.run = run
        self.metadata_image = metadata_image  # the reads pass's 500 KB JPEG
        self.upload_body = images.upload_jpeg()  # upload_200k's
        rounds = SMOKE_ROUNDS if run.args.smoke else ROUNDS
        self.order = [side for number in range(rounds) for side in ((OFF, ON) if number % 2 == 0 else (ON, OFF))]
        self.leg_seconds = max(1, run.args.duration // 2)

    def execute(self) -> None:
        run = self.run
        storage = str(run.workdir / "images")  # the reads and uploads passes': one storage per database
        multiprocess = run.workdir / "prometheus-multiproc"
        multiprocess.mkdir()
        # The same layout on both sides; only what issue 17 adds differs.
        settings = {
            OFF: {"METRICS_ENABLED": "false", "LOG_FORMAT": "text"},
            ON: {
                "METRICS_ENABLED": "true",
                "LOG_FORMAT": "json",
                "ACCESS_LOG": "false",
                "PROMETHEUS_MULTIPROC_DIR": str(multiprocess),
            },
        }
        servers = {
            side: run.start_chitram(
                f"chitram-observability-{side}", STORAGE_BACKEND="local", LOCAL_STORAGE_PATH=storage, **env
            )
            for side, env in settings.items()
        }
        statuses = {
            side: httpx.get(server.base_url + METRICS_PATH, timeout=10).status_code for side, server in servers.items()
        }
        run.log(f"observability: /metrics answers {statuses[OFF]} off, {statuses[ON]} on; legs {' '.join(self.order)}")
        if statuses[ON] != 200:
            run.log("observability: warning: the on server serves no metrics, so its figures measure none")
        if statuses[OFF] == 200:
            run.log("observability: warning: the off server serves /metrics with METRICS_ENABLED=false")
        image_id, accounts = self.prepare(servers)
        scrape_cpu_ms = self.scrape_cost(servers[ON]) if statuses[ON] == 200 else None
        log_lines_before = {side: _lines(server) for side, server in servers.items()}
        with MetricsScraper(servers[ON]) as scraper:
            windows = {
                METADATA: self.alternate(METADATA, servers, f"/api/v1/images/{image_id}", image_id=image_id),
                UPLOAD: self.alternate(UPLOAD, servers, client_scenarios.UPLOAD_PATH, accounts=accounts),
            }
        for scenario, measured in windows.items():
            run.scenarios[f"{scenario}_{ON}"]["scrapes_in_windows"] = scraper.inside(measured)
        run.scenarios[SCRAPES] = {
            "kind": "scrapes",
            **scraper.summary(),
            "idle_scrape_cpu_ms": scrape_cpu_ms,
            "metrics_status": statuses,
            "log_lines_during_legs": {
                side: _lines(server) - log_lines_before[side] for side, server in servers.items()
            },
        }
        run.log(f"observability: {run.scenarios[SCRAPES]}")
        for server in servers.values():
            run.processes.stop(server)

    def prepare(self, servers: dict[str, Service]) -> tuple[str, dict[str, client_scenarios.Account]]:
        """The image whose metadata both servers hold near, and each server's upload account, checked."""
        accounts = {}
        with httpx.Client(base_url=servers[OFF].base_url, timeout=60) as client:
            token = client_scenarios.register(client).token
            image_id = client_scenarios.upload(client, token, self.metadata_image, filename="file-500k.jpg")["id"]
        for side, server in servers.items():
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                client_scenarios.warm_metadata_cache(client, image_id)
                accounts[side] = client_scenarios.register(client)
                checksums = client_scenarios.check_variants_are_new(
                    client, accounts[side].token, self.upload_body, filename="phone.jpg", content_type="image/jpeg"
                )
                shown = ", ".join(checksum[:8] for checksum in checksums)
                self.run.log(f"observability {side}: stamped variants stored as new content ({shown})")
        self.run.wait_for_thumbnails()
        return image_id, accounts

    def scrape_cost(self, server: Service) -> float | None:
        """The server's CPU per scrape of /metrics while idle (ms): what a scrape adds to the load it watches."""
        wait_for_quiet(server.pid)
        before = CpuReading.now(server.pid)
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for _ in range(IDLE_SCRAPES):
                client.get(METRICS_PATH).raise_for_status()
        return CpuReading.now(server.pid).since(before, IDLE_SCRAPES)["server_cpu_ms_per_request"]

    def alternate(
        self,
        scenario: str,
        servers: dict[str, Service],
        path: str,
        *,
        image_id: str | None = None,
        accounts: dict[str, client_scenarios.Account] | None = None,
    ) -> list[tuple[float, float]]:
        """One scenario's legs, off and on in turn (self.order), then each side's figures combined.

        Metadata (`image_id`) is checked to be held near before each leg; uploads (`accounts`) wait for
        their thumbnails after each, and must all have been new content. Returns the on side's measured
        windows (start, end; Unix time).
        """
        run = self.run
        legs: dict[str, list[dict[str, Any]]] = {OFF: [], ON: []}
        counted_before = self.requests_counted(servers[ON])
        options: dict[str, dict[str, Any]] = {OFF: {}, ON: {}}
        if accounts is not None:
            options = {
                side: {
                    "connections": UPLOAD_CONNECTIONS,
                    "lua": client_scenarios.unique_upload_lua(
                        self.upload_body, accounts[side], self.run.workdir / f"{scenario}_{side}.body"
                    ),
                }
                for side in options
            }
        for number, side in enumerate(self.order, start=1):
            if image_id is not None:
                with httpx.Client(base_url=servers[side].base_url, timeout=60) as client:
                    client_scenarios.warm_metadata_cache(client, image_id)
            figures = run.wrk(
                f"{scenario}_{side}",
                servers[side],
                path,
                leg=number,
                duration=self.leg_seconds,
                # Later legs of a server follow its first: it is warm already.
                warmup=None if not legs[side] else 0,
                **options[side],
            )
            if accounts is not None:
                figures.update(run.wait_for_thumbnails())
            legs[side].append(figures)
        counted_after = self.settled_count(servers[ON])
        run.log(f"{scenario}: the on server's request counter went from {counted_before} to {counted_after}")
        for side, measured in legs.items():
            figures = combine_legs(measured)
            # Unrounded enough for a 5% comparison: a near-cache hit costs under 0.1 ms, where the
            # 0.01 ms of server_cpu_ms_per_request would be a step of 10%.
            figures["server_cpu_us_per_request"] = round(figures["server_cpu_s"] * 1e6 / figures["requests"], 1)
            if accounts is not None:
                figures["thumbnail_backlog"] = max(leg["thumbnail_backlog"] for leg in measured)
                figures["backlog_drained_seconds"] = max(leg["backlog_drained_seconds"] for leg in measured)
                figures.update(client_scenarios.all_new(self.run.database, f"{scenario}_{side}", accounts[side]))
            if side == ON:
                # At least the requests wrk saw answered, or the metrics did not watch this path.
                figures["metrics_counted_requests"] = (
                    None if counted_before is None or counted_after is None else round(counted_after - counted_before)
                )
            run.scenarios[f"{scenario}_{side}"] = figures
        return [(leg["ended_at"] - leg["duration_s"], leg["ended_at"]) for leg in legs[ON]]

    def settled_count(self, server: Service) -> float | None:
        """The server's request counter once two readings SETTLE_SECONDS apart agree (or the last reading)."""
        counted = self.requests_counted(server)
        for _ in range(SETTLE_READINGS):
            if counted is None:
                return None
            time.sleep(SETTLE_SECONDS)
            previous, counted = counted, self.requests_counted(server)
            if counted == previous:
                break
        return counted

    def requests_counted(self, server: Service) -> float | None:
        """The server's chitram_http_requests_total now, or None if it serves no metrics."""
        response = httpx.get(server.base_url + METRICS_PATH, timeout=10)
        return requests_counted(response.text) if response.status_code == 200 else None


def _lines(server: Service) -> int:
    return server.log.read_bytes().count(b"\n")
