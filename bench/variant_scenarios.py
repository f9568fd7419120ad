"""The variants pass (issue 14): cold renders against their floor, a warm variant against an
original of the very same bytes, and single flight.

  variant_cold_webp, variant_cold_avif    the first `?w=600&format=webp` (`avif`) of each of N new
                                          4000x3000 JPEGs, one request at a time
  variant_webp_floor, variant_avif_floor  the same renders' least work in a plain Pillow loop
                                          (variant_floor.py), in this process, run by run in turn
                                          with the server's, so a burst of other work weighs on both
  variant_warm, original_warm             wrk on a stored 1200 px WebP variant, and on an original
                                          uploaded with that variant's bytes: same size, same type
  variant_single_flight                   50 concurrent first requests for one variant, one server
  variant_single_flight_two_processes     the same, 25 on each of two servers sharing database and storage

Every source is new content (images.fresh): variants belong to a content, so a copy would find its
variants made already. The servers of this pass log the app's "rendered variant" line (one per render,
with the milliseconds of render and store in the worker thread; uvicorn's own logging set-up hides
it): renders are counted from those lines, and each timed cold request must have its own.

A cold render's CPU is the server process's (every thread, from /proc) from just before its request
to just after its answer; the floor's is this process's over its render (libavif's threads included).
The warm pair runs in four legs of half the duration, variant original original variant, as the
stripping pair of upload_scenarios.py does.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import statistics
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

import client_scenarios
import images
import variant_floor
from services import CpuReading, Service
from wrk import combine_legs, wait_for_quiet

if TYPE_CHECKING:
    from harness import Run

COLD_WIDTH = variant_floor.WIDTH
COLD_FORMATS = ("webp", "avif")
COLD_SAMPLES = 20
SMOKE_COLD_SAMPLES = 2
WARM_WIDTH = 1200
WARM_LEGS = ("variant_warm", "original_warm", "original_warm", "variant_warm")
SINGLE_FLIGHT_REQUESTS = 50
CONTENT_TYPES = {"webp": "image/webp", "avif": "image/avif"}
# app.services.variants logs this once per render, after the render and its store.
_RENDERED = re.compile(
    r"rendered variant (?P<name>\S+) of (?P<checksum>[0-9a-f]{64}) \((?P<content_type>[^,]+), "
    r"(?P<bytes>\d+) bytes\) in (?P<ms>\d+) ms"
)
# uvicorn's --log-config: the app's variant lines and uvicorn's own, everything else at WARNING.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {"app.services.variants": {"level": "INFO"}, "uvicorn.error": {"level": "INFO"}},
}


def variant_path(image_id: str, width: int, image_format: str) -> str:
    return f"/api/v1/images/{image_id}/file?w={width}&format={image_format}"


def renders_logged(*servers: Service) -> list[dict[str, Any]]:
    """Every "rendered variant" line the servers have logged so far."""
    lines = []
    for server in servers:
        for match in _RENDERED.finditer(server.log.read_text(errors="replace")):
            lines.append(
                {**match.groupdict(), "bytes": int(match["bytes"]), "ms": int(match["ms"]), "server": server.name}
            )
    return lines


def renders_of(lines: list[dict[str, Any]], checksum: str, width: int, image_format: str) -> list[dict[str, Any]]:
    """The renders of one variant: its name starts with the width and mode (then the encoders' fingerprint)."""
    prefix = f"{width}-{image_format}-"
    return [line for line in lines if line["checksum"] == checksum and line["name"].startswith(prefix)]


class VariantPass:
    """The variant scenarios on servers this pass starts and stops; results go to `run.scenarios`."""

    def __init__(self, run: Run, source: bytes) -> None:
        self.run = run
        self.source = source  # the 4000x3000 JPEG of scenario 4, with the bench ICC profile
        self.log_config = run.workdir / "variant-logging.json"
        self.log_config.write_text(json.dumps(LOG_CONFIG))

    def start_server(self, name: str) -> Service:
        return self.run.start_chitram(
            name,
            log_config=self.log_config,
            STORAGE_BACKEND="local",
            LOCAL_STORAGE_PATH=str(self.run.workdir / "images"),
            # Made on the first request, which the cold scenarios time, whatever the default becomes.
            VARIANT_PREGENERATE="",
        )

    def execute(self) -> None:
        run = self.run
        samples = SMOKE_COLD_SAMPLES if run.args.smoke else COLD_SAMPLES
        server = self.start_server("chitram-variants")
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            token = client_scenarios.register(client).token
            # The first of the cold set warms each renderer up (plugin imports, first allocations),
            # and then gives the warm scenario its 1200 px variant; the last is for single flight.
            bodies = [images.fresh(self.source) for _ in range(samples + 2)]
            uploaded = [
                client_scenarios.upload(client, token, body, filename=f"variant-{n}.jpg")
                for n, body in enumerate(bodies)
            ]
            if len({image["checksum"] for image in uploaded}) != len(uploaded):
                raise RuntimeError("the variant sources are not all new content")
            run.log(
                f"variants: {len(uploaded)} sources of {len(self.source):,} B uploaded; waiting for their thumbnails"
            )
            run.wait_for_thumbnails()
            self.cold_renders(client, server, uploaded[: samples + 1], bodies[: samples + 1])
            self.warm(client, server, token, uploaded[0])
        self.run.scenarios["variant_single_flight"] = self.single_flight([server], uploaded[-1])
        second = self.start_server("chitram-variants-2")
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            token = client_scenarios.register(client).token
            image = client_scenarios.upload(client, token, images.fresh(self.source), filename="variant-flight.jpg")
            run.wait_for_thumbnails()
        self.run.scenarios["variant_single_flight_two_processes"] = self.single_flight([server, second], image)
        run.processes.stop(second)
        run.processes.stop(server)

    # -- 1. cold renders against their floor --------------------------------------------------

    def cold_renders(
        self, client: httpx.Client, server: Service, uploaded: list[dict[str, Any]], bodies: list[bytes]
    ) -> None:
        run = self.run
        floors = {image_format: variant_floor.FloorTimer(image_format) for image_format in COLD_FORMATS}
        served: dict[str, dict[str, list[float]]] = {
            image_format: {"wall_ms": [], "cpu_ms": [], "bytes": []} for image_format in COLD_FORMATS
        }
        for image_format in COLD_FORMATS:
            floors[image_format].warm_up(bodies[0])
            self.get_variant(client, uploaded[0]["id"], COLD_WIDTH, image_format)
        wait_for_quiet(server.pid)
        run.log(f"variants: {len(uploaded) - 1} cold renders of each of {', '.join(COLD_FORMATS)}, floor in turn")
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        for index, (image, body) in enumerate(zip(uploaded[1:], bodies[1:], strict=True)):
            for image_format in COLD_FORMATS:
                floor = floors[image_format]
                # Which goes first alternates, so neither always finds the other's data in the caches.
                if index % 2:
                    floor.render(body)
                before = CpuReading.now(server.pid)
                started = time.perf_counter()
                data = self.get_variant(client, image["id"], COLD_WIDTH, image_format)
                served[image_format]["wall_ms"].append((time.perf_counter() - started) * 1000)
                served[image_format]["cpu_ms"].append(
                    (CpuReading.now(server.pid).process_ticks - before.process_ticks) * tick_ms
                )
                served[image_format]["bytes"].append(len(data))
                if not index % 2:
                    floor.render(body)
        logged = renders_logged(server)
        for image_format in COLD_FORMATS:
            in_thread = []
            for image in uploaded[1:]:
                renders = renders_of(logged, image["checksum"], COLD_WIDTH, image_format)
                if len(renders) != 1:
                    raise RuntimeError(
                        f"variants: the first {image_format} request of {image['id']} made {len(renders)} renders, "
                        "not one (a cold scenario must time a render every time)"
                    )
                in_thread.append(renders[0]["ms"])
            figures = served[image_format]
            run.scenarios[f"variant_cold_{image_format}"] = {
                "kind": "client",
                "format": image_format,
                "width": COLD_WIDTH,
                "samples": len(figures["wall_ms"]),
                "source_bytes": len(self.source),
                "variant_bytes": int(statistics.median(figures["bytes"])),
                "median_ms": round(statistics.median(figures["wall_ms"]), 1),
                "min_ms": round(min(figures["wall_ms"]), 1),
                "max_ms": round(max(figures["wall_ms"]), 1),
                "cpu_ms_per_render": round(statistics.fmean(figures["cpu_ms"]), 1),
                "render_and_store_median_ms": round(statistics.median(in_thread), 1),
            }
            floor_figures = floors[image_format].figures()
            run.scenarios[f"variant_{image_format}_floor"] = floor_figures
            served_figures = run.scenarios[f"variant_cold_{image_format}"]
            run.log(
                f"variants: cold {image_format} {served_figures['median_ms']} ms (median), "
                f"{served_figures['cpu_ms_per_render']} ms CPU each; floor {floor_figures['median_ms']} ms, "
                f"{floor_figures['cpu_ms_per_render']} ms CPU"
            )

    def get_variant(self, client: httpx.Client, image_id: str, width: int, image_format: str) -> bytes:
        """GET a variant; fail unless it is the format asked for at the width asked for."""
        response = client.get(variant_path(image_id, width, image_format))
        if response.status_code != 200 or response.headers["content-type"] != CONTENT_TYPES[image_format]:
            raise RuntimeError(
                f"variant {width} {image_format} of {image_id} answered {response.status_code} "
                f"({response.headers.get('content-type')}): {response.text[:200]}"
            )
        with Image.open(io.BytesIO(response.content)) as picture:
            if picture.width != width:
                raise RuntimeError(f"variant {width} {image_format} of {image_id} is {picture.width} px wide")
        return response.content

    # -- 2. a warm variant against an original of the same bytes -------------------------------

    def warm(self, client: httpx.Client, server: Service, token: str, image: dict[str, Any]) -> None:
        """wrk on a stored variant and on an original holding the variant's very bytes, in legs by turns."""
        run = self.run
        variant = self.get_variant(client, image["id"], WARM_WIDTH, "webp")
        original = client_scenarios.upload(
            client, token, variant, filename=f"variant-{WARM_WIDTH}.webp", content_type="image/webp"
        )
        paths = {
            "variant_warm": variant_path(image["id"], WARM_WIDTH, "webp"),
            "original_warm": f"/api/v1/images/{original['id']}/file",
        }
        # Stripping leaves a file without metadata as it is, so the original must be those very bytes.
        client_scenarios.check_download(client, paths["original_warm"], variant)
        # Both images' metadata from the near copy, as for any popular link.
        client_scenarios.warm_metadata_cache(client, image["id"])
        client_scenarios.warm_metadata_cache(client, original["id"])
        run.log(f"variants: warm {WARM_WIDTH} px WebP variant and an original of the same {len(variant):,} B")
        legs: dict[str, list[dict[str, Any]]] = {name: [] for name in WARM_LEGS}
        for number, name in enumerate(WARM_LEGS, start=1):
            figures = run.wrk(
                name,
                server,
                paths[name],
                leg=number,
                duration=max(1, run.args.duration // 2),
                warmup=None if not legs[name] else 0,
            )
            legs[name].append(figures)
        for name, measured in legs.items():
            run.scenarios[name] = {**combine_legs(measured), "body_bytes": len(variant)}

    # -- 3. single flight -------------------------------------------------------------------------

    def single_flight(self, servers: list[Service], image: dict[str, Any]) -> dict[str, Any]:
        """SINGLE_FLIGHT_REQUESTS first requests for one variant at once, spread over `servers`; renders counted."""
        path = variant_path(image["id"], COLD_WIDTH, "webp")
        for server in servers:
            wait_for_quiet(server.pid)
        answers, seconds = asyncio.run(_concurrent_gets([server.base_url for server in servers], path))
        renders = renders_of(renders_logged(*servers), image["checksum"], COLD_WIDTH, "webp")
        statuses = Counter(str(status) for status, _ in answers)
        bodies = Counter(digest for status, digest in answers if status == 200)
        same = bodies.most_common(1)[0][1] if bodies else 0
        figures = {
            "kind": "client",
            "processes": len(servers),
            "requests": len(answers),
            "statuses": dict(sorted(statuses.items())),
            "answered_alike": same,  # 200 with the bytes most of them got
            "distinct_bodies": len(bodies),
            "renders": len(renders),
            "renders_by_server": dict(Counter(render["server"] for render in renders)),
            "seconds_until_answered": round(seconds, 2),
        }
        self.run.log(f"variants: single flight over {len(servers)} process(es): {figures}")
        return figures


async def _concurrent_gets(base_urls: list[str], path: str) -> tuple[list[tuple[int, str]], float]:
    """SINGLE_FLIGHT_REQUESTS GETs of `path` at once, by turns over `base_urls`: (status, body digest) each.

    Each client opens its connections first (GET /health), so the variant requests leave together
    rather than behind as many TCP handshakes.
    """
    share = [len(range(index, SINGLE_FLIGHT_REQUESTS, len(base_urls))) for index in range(len(base_urls))]
    clients = [
        httpx.AsyncClient(
            base_url=url, timeout=120, limits=httpx.Limits(max_connections=count, max_keepalive_connections=count)
        )
        for url, count in zip(base_urls, share, strict=True)
    ]
    try:
        for client, count in zip(clients, share, strict=True):
            await asyncio.gather(*(client.get("/health") for _ in range(count)))

        async def one(index: int) -> tuple[int, str]:
            try:
                response = await clients[index % len(clients)].get(path)
            except httpx.TransportError as error:
                return 0, type(error).__name__
            return response.status_code, hashlib.sha256(response.content).hexdigest()

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(index) for index in range(SINGLE_FLIGHT_REQUESTS)))
        return list(answers), time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
