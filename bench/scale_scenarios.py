"""The scale pass (issue 18): what a request costs the API processes, with one of them and with two.

Wall-clock throughput cannot show scaling on a shared 2-core machine: wrk, nginx, PostgreSQL, Redis and
every API process take turns on the same two cores. The CPU a request costs can: summed over the API
processes (user + system time of each, all threads, from /proc), it should stay flat when a second
process shares the work on the same engines (one Redis for the cache, the limits and the invalidations,
one database, each process's own near cache).

The layout is scale_out_layout.py's, started once for the pass: two `python -m app` processes (each
WEB_CONCURRENCY=1), one worker tier of one job process (JOB_QUEUE=postgres: the API processes make no
thumbnails), the run's database and Redis, local storage, and nginx with two sites: `one` balances over
api-1 alone, `two` over api-1 and api-2. A leg drives one site with wrk and counts the CPU of the
processes that site balances over (api-2 idles through a `one` leg, and is no part of that layout).

Separate processes behind nginx rather than WEB_CONCURRENCY=2 on one port: that is how instances scale
out (one per host or container, a balancer in front); nginx's round robin gives each process half of the
requests, where uvicorn's shared socket leaves the split to the kernel's accept (one process may take
most of wrk's connections, making the two-process leg partly a one-process leg); and both sides go
through the same nginx, so they differ only in the number of API processes.

  scale_metadata_one, _two  the reads pass's metadata_cached: one image's metadata, held near by every
                            process (checked before each leg), 32 connections
  scale_upload_one, _two    the uploads pass's upload_200k: unique ~200 KB phone JPEGs, 8 connections,
                            each leg after the thumbnails of the one before; the worker tier's CPU is not
                            counted (the same work whatever the number of API processes)

Each scenario runs in rounds of two legs of half the duration, one two, then two one, and so on (four
rounds; two with --smoke), as the observability pass alternates: drift of the machine weighs on both
sides alike. A side's figures add up its legs (wrk.combine_legs). A two-process side counts only if each
process did at least MIN_CPU_SHARE of its CPU; if not, the pass's targets miss rather than pass unmeasured.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import client_scenarios
import images
from scale_out_layout import Member, ScaleOutLayout
from services import Service
from upload_scenarios import UPLOAD_CONNECTIONS
from wrk import combine_legs

if TYPE_CHECKING:
    import argparse

    from harness import Run

ONE, TWO = "one", "two"
ROUNDS = 4
SMOKE_ROUNDS = 2
# With round robin each process should do about half; a quarter is where the split stops meaning "two".
MIN_CPU_SHARE = 0.25
METADATA, UPLOAD = "scale_metadata", "scale_upload"


def budget_seconds(args: argparse.Namespace) -> int:
    """An upper bound for the pass: the layout's start, and every leg with its quiet wait and thumbnails."""
    legs = 2 * 2 * (SMOKE_ROUNDS if args.smoke else ROUNDS)
    return int(120 + legs * (max(1, args.duration // 2) + 15) + 4 * args.warmup)


@dataclass(frozen=True)
class Counters:
    """Processes' user and system CPU (clock ticks) and context switches (every thread), at one instant.

    Diagnostics beside the target: where CPU per request differs between the sides, whether it is user
    or system time, and whether the processes woke up more often per request.
    """

    user_ticks: int = 0
    system_ticks: int = 0
    switches: int = 0

    @classmethod
    def now(cls, pids: list[int]) -> Counters:
        user = system = switches = 0
        for pid in pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                user, system = user + int(fields[11]), system + int(fields[12])
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        for line in (task / "status").read_text().splitlines():
                            if "ctxt_switches:" in line:
                                switches += int(line.split()[-1])
        return cls(user, system, switches)

    def since(self, earlier: Counters) -> Counters:
        return Counters(
            self.user_ticks - earlier.user_ticks,
            self.system_ticks - earlier.system_ticks,
            self.switches - earlier.switches,
        )


class ScalePass:
    """Both scenarios, one API process and two in turn, on a layout this pass starts and stops."""

    def __init__(self, run: Run, metadata_image: bytes) -> None:
        self.run = run
        self.metadata_image = metadata_image  # the reads pass's 500 KB JPEG
        self.upload_body = images.upload_jpeg()  # upload_200k's
        rounds = SMOKE_ROUNDS if run.args.smoke else ROUNDS
        self.order = [side for number in range(rounds) for side in ((ONE, TWO) if number % 2 == 0 else (TWO, ONE))]
        self.leg_seconds = max(1, run.args.duration // 2)
        self.members: dict[str, list[Member]] = {}  # the API processes each side balances over

    def execute(self) -> None:
        run = self.run
        settings = {
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_PATH": str(run.workdir / "images"),  # the reads pass's: one storage per database
            "JOB_QUEUE": "postgres",
            "THUMBNAIL_WORKERS_ENABLED": "false",
            "VARIANT_PREGENERATE": "",
        }
        layout = ScaleOutLayout(run.processes, run.app_env(**settings), api_count=2, worker_count=1, access_log=False)
        api_one, api_two = layout.apis
        self.members = {ONE: [api_one], TWO: [api_one, api_two]}
        run.log("scale: nginx, 2 API processes (python -m app) and a worker tier; sites `one` and `two`")
        layout.start(sites=self.members)
        balancer = layout.balancer
        assert balancer is not None
        sites = {
            side: Service(f"nginx-{side}", balancer.process, url, balancer.log) for side, url in layout.sites.items()
        }
        run.log(f"scale: legs {' '.join(self.order)}")
        image_id, accounts = self.prepare(sites, layout.apis)
        self.alternate(METADATA, layout, sites, f"/api/v1/images/{image_id}", image_id=image_id)
        self.alternate(UPLOAD, layout, sites, client_scenarios.UPLOAD_PATH, accounts=accounts)
        layout.stop()

    def prepare(self, sites: dict[str, Service], apis: list[Member]) -> tuple[str, dict[str, client_scenarios.Account]]:
        """The image whose metadata every process holds near, and each side's upload account, checked."""
        accounts = {}
        with httpx.Client(base_url=sites[TWO].base_url, timeout=60) as client:
            token = client_scenarios.register(client).token
            image_id = client_scenarios.upload(client, token, self.metadata_image, filename="file-500k.jpg")["id"]
        self.run.wait_for_thumbnails()
        self.warm(apis, image_id)
        for side, site in sites.items():
            with httpx.Client(base_url=site.base_url, timeout=60) as client:
                accounts[side] = client_scenarios.register(client)
                checksums = client_scenarios.check_variants_are_new(
                    client, accounts[side].token, self.upload_body, filename="phone.jpg", content_type="image/jpeg"
                )
                shown = ", ".join(checksum[:8] for checksum in checksums)
                self.run.log(f"scale {side}: stamped variants stored as new content ({shown})")
        self.run.wait_for_thumbnails()
        return image_id, accounts

    def warm(self, apis: list[Member], image_id: str) -> None:
        """Every API process holds the image's metadata near (asked directly, not through nginx)."""
        for member in apis:
            with httpx.Client(base_url=member.base_url, timeout=60) as client:
                client_scenarios.warm_metadata_cache(client, image_id)

    def alternate(
        self,
        scenario: str,
        layout: ScaleOutLayout,
        sites: dict[str, Service],
        path: str,
        *,
        image_id: str | None = None,
        accounts: dict[str, client_scenarios.Account] | None = None,
    ) -> None:
        """One scenario's legs, one and two in turn (self.order), then each side's figures combined."""
        run = self.run
        legs: dict[str, list[dict[str, Any]]] = {ONE: [], TWO: []}
        options: dict[str, dict[str, Any]] = {ONE: {}, TWO: {}}
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
                self.warm(layout.apis, image_id)
            pids = layout.pids(self.members[side])
            # The API processes this side leaves idle (api-2 during a `one` leg): what a process costs at rest.
            bystanders = [pid for pid in layout.pids(layout.apis) if pid not in pids]
            before, bystanders_before = Counters.now(pids), Counters.now(bystanders)
            figures = run.wrk(
                f"{scenario}_{side}",
                sites[side],
                path,
                leg=number,
                duration=self.leg_seconds,
                measured_pids=pids,
                measured_name=" + ".join(member.name for member in self.members[side]),
                # Later legs of a side follow its first: the processes are warm already.
                warmup=None if not legs[side] else 0,
                **options[side],
            )
            counted, idle = Counters.now(pids).since(before), Counters.now(bystanders).since(bystanders_before)
            figures["counters"] = {"measured": counted.__dict__, "bystanders": idle.__dict__}
            by_pid = figures.get("server_cpu_s_by_pid", {str(pids[0]): figures["server_cpu_s"]})
            figures["cpu_s_by_process"] = {
                member.name: sum(by_pid.get(str(pid), 0.0) for pid in layout.pids([member]))
                for member in self.members[side]
            }
            if accounts is not None:
                figures.update(run.wait_for_thumbnails())
            legs[side].append(figures)
        for side, measured in legs.items():
            figures = combine_legs(measured)
            figures.pop("counters", None)  # the first leg's, which combine_legs kept
            # Unrounded enough for a 10% comparison: a near-cache hit costs well under 0.1 ms.
            figures["server_cpu_us_per_request"] = round(figures["server_cpu_s"] * 1e6 / figures["requests"], 1)
            by_process = {
                name: round(sum(leg["cpu_s_by_process"][name] for leg in measured), 2)
                for name in measured[0]["cpu_s_by_process"]
            }
            total = sum(by_process.values())
            figures["api_processes"] = len(self.members[side])
            figures.update(self.diagnostics(measured))
            figures["cpu_s_by_process"] = by_process
            figures["cpu_share_by_process"] = {
                name: round(cpu / total, 3) if total else 0.0 for name, cpu in by_process.items()
            }
            if accounts is not None:
                figures["thumbnail_backlog"] = max(leg["thumbnail_backlog"] for leg in measured)
                figures["backlog_drained_seconds"] = max(leg["backlog_drained_seconds"] for leg in measured)
                figures.update(client_scenarios.all_new(self.run.database, f"{scenario}_{side}", accounts[side]))
            run.scenarios[f"{scenario}_{side}"] = figures
        one, two = run.scenarios[f"{scenario}_{ONE}"], run.scenarios[f"{scenario}_{TWO}"]
        run.log(
            f"{scenario}: CPU per request {one['server_cpu_us_per_request']} µs with one API process, "
            f"{two['server_cpu_us_per_request']} µs with two (shares {two['cpu_share_by_process']})"
        )

    def diagnostics(self, legs: list[dict[str, Any]]) -> dict[str, Any]:
        """Per request over a side's legs: system time's share of the CPU, context switches, and the CPU the
        idle API process spent meanwhile (ms per second), each counted from before wrk's warm-up (if any)
        and quiet wait to after its run, so a little more than the measured window."""
        counted = [Counters(**leg["counters"]["measured"]) for leg in legs]
        idle = [Counters(**leg["counters"]["bystanders"]) for leg in legs]
        requests = sum(leg["requests"] for leg in legs)
        seconds = sum(leg["duration_s"] for leg in legs)
        ticks = sum(c.user_ticks + c.system_ticks for c in counted)
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        return {
            "system_share": round(sum(c.system_ticks for c in counted) / ticks, 3) if ticks else None,
            "context_switches_per_request": round(sum(c.switches for c in counted) / requests, 2) if requests else None,
            "idle_process_cpu_ms_per_s": round(sum(c.user_ticks + c.system_ticks for c in idle) * tick_ms / seconds, 2)
            if any(c != Counters() for c in idle)
            else None,
        }
