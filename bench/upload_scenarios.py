"""The upload pass: what an upload costs when its content is new, and when it is a copy (issue 13).

Every upload is stripped of its metadata and then hashed, and identical content is stored once
(ADR 0013, 0014), so a body sent over and over measures duplicates after its first request. The
unique scenarios send a new body every time: wrk rewrites the date in the image's ICC profile from a
per-thread counter (wrk.upload_lua), which stripping keeps, so every request is new content that
decodes exactly as the others do. Each scenario's account is checked in the database afterwards:
as many distinct contents as images, or the run fails.

  upload_200k            unique ~200 KB phone JPEGs (EXIF with GPS, XMP, ICC), stripping on
  upload_200k_nostrip    the same on a second server with STRIP_METADATA=false
  upload_200k_duplicate  one fixed body, stored (thumbnail and all) before: every request a copy
  upload_webp            unique 1600x1200 lossy WebPs (~230 KB)
  upload_heic            unique 4032x3024 HEICs (~2.8 MB), fewer connections and twice as long

and floors in plain loops, one process per core (upload_floor.py), each soon after its scenario:

  upload_floor           a JPEG upload's least work (decode at thumbnail scale, hash, store, thumbnail)
  webp_floor, heic_floor decode whole, hash, store

Stripping on and off run on two servers started together for this pass, in eight legs of half the
duration each, ordered on off off on, off on on off: drift of the machine during the pair (ext4
filling its directories) weighs on both alike, and a burst of other work on a shared machine lands
on one leg of one side rather than on a whole side. Every leg starts with the thumbnails of the one
before made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

import client_scenarios
import images
import upload_floor
from client_scenarios import Account
from services import Service
from wrk import combine_legs, upload_lua

if TYPE_CHECKING:
    from harness import Run

UPLOAD_PATH = client_scenarios.UPLOAD_PATH
UPLOAD_CONNECTIONS = 8
# A HEIC takes about half a second of CPU to decode: four in flight keep both cores busy without
# queueing 36 MB decoded frames eight deep, and twice the duration gives the sample some size.
HEIC_CONNECTIONS = 4
HEIC_DURATION_FACTOR = 2
HEIC_MIN_SECONDS = 3  # a smoke run still sees a few HEIC uploads complete
_ON, _OFF = "upload_200k", "upload_200k_nostrip"
STRIP_LEGS = (_ON, _OFF, _OFF, _ON, _OFF, _ON, _ON, _OFF)
JPEG = "image/jpeg"


@dataclass(frozen=True)
class UploadBody:
    """One scenario's image as a client sends it."""

    data: bytes
    filename: str
    content_type: str


@dataclass(frozen=True)
class UploadBodies:
    jpeg: UploadBody
    webp: UploadBody
    heic: UploadBody

    @classmethod
    def make(cls) -> UploadBodies:
        return cls(
            UploadBody(images.upload_jpeg(), "phone.jpg", JPEG),
            UploadBody(images.upload_webp(), "web.webp", "image/webp"),
            UploadBody(images.upload_heic(), "phone.heic", "image/heic"),
        )

    def describe(self) -> str:
        return ", ".join(f"{body.filename} {len(body.data):,} B" for body in (self.jpeg, self.webp, self.heic))


class UploadPass:
    """The upload scenarios and their floors, on two servers this pass starts; `execute()` leaves one up."""

    def __init__(self, run: Run, bodies: UploadBodies) -> None:
        self.run = run
        self.bodies = bodies
        self.floor_folder = run.workdir / "upload-floors"
        self.floor_folder.mkdir()

    def execute(self) -> tuple[Service, Account]:
        """Measure every upload scenario and floor; return the stripping server (still up) and an account."""
        run = self.run
        storage = str(run.workdir / "images")
        strip = run.start_chitram("chitram-strip", STORAGE_BACKEND="local", LOCAL_STORAGE_PATH=storage)
        nostrip = run.start_chitram(
            "chitram-nostrip", STORAGE_BACKEND="local", LOCAL_STORAGE_PATH=storage, STRIP_METADATA="false"
        )
        with httpx.Client(base_url=strip.base_url, timeout=60) as client:
            accounts = {name: client_scenarios.register(client) for name in sorted(set(STRIP_LEGS))}
            self.check_variants(client, accounts["upload_200k"], self.bodies.jpeg)
        with httpx.Client(base_url=nostrip.base_url, timeout=60) as client:
            self.check_variants(client, accounts["upload_200k_nostrip"], self.bodies.jpeg)
        run.wait_for_thumbnails()
        self.strip_on_and_off({"upload_200k": strip, "upload_200k_nostrip": nostrip}, accounts)
        run.processes.stop(nostrip)

        with httpx.Client(base_url=strip.base_url, timeout=60) as client:
            self.duplicates(client, strip)
            run.scenarios["upload_floor"] = self.floor(self.bodies.jpeg, "upload", run.args.duration)

            webp = client_scenarios.register(client)
            self.check_variants(client, webp, self.bodies.webp)
            self.unique("upload_webp", strip, webp, self.bodies.webp)
            run.scenarios["webp_floor"] = self.floor(self.bodies.webp, "decode_store", run.args.duration)

            heic = client_scenarios.register(client)
            self.check_variants(client, heic, self.bodies.heic)
            seconds = max(HEIC_MIN_SECONDS, HEIC_DURATION_FACTOR * run.args.duration)
            self.unique("upload_heic", strip, heic, self.bodies.heic, connections=HEIC_CONNECTIONS, duration=seconds)
            run.scenarios["heic_floor"] = self.floor(self.bodies.heic, "decode_store", seconds)
        return strip, accounts["upload_200k"]

    def check_variants(self, client: httpx.Client, account: Account, body: UploadBody) -> None:
        checksums = client_scenarios.check_variants_are_new(
            client, account.token, body.data, filename=body.filename, content_type=body.content_type
        )
        self.run.log(f"{body.filename}: stamped variants stored as new content ({', '.join(c[:8] for c in checksums)})")

    def strip_on_and_off(self, servers: dict[str, Service], accounts: dict[str, Account]) -> None:
        """Unique JPEG uploads with stripping on and off, leg by leg (STRIP_LEGS), then combined."""
        legs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        leg_seconds = max(1, self.run.args.duration // 2)
        for number, name in enumerate(STRIP_LEGS, start=1):
            first_of_its_server = not legs[name]
            figures = self.run.wrk(
                name,
                servers[name],
                UPLOAD_PATH,
                connections=UPLOAD_CONNECTIONS,
                lua=self.lua(name, accounts[name], self.bodies.jpeg, unique=True),
                leg=number,
                duration=leg_seconds,
                # Later legs of a server follow its first: it is warm already.
                warmup=None if first_of_its_server else 0,
            )
            legs[name].append({**figures, **self.run.wait_for_thumbnails()})
        for name, measured in legs.items():
            figures = combine_legs(measured)
            figures["thumbnail_backlog"] = max(leg["thumbnail_backlog"] for leg in measured)
            figures["backlog_drained_seconds"] = max(leg["backlog_drained_seconds"] for leg in measured)
            figures.update(client_scenarios.all_new(self.run.database, name, accounts[name]))
            self.run.scenarios[name] = figures

    def duplicates(self, client: httpx.Client, server: Service) -> None:
        """One body, stored with its thumbnail before the first request: every request is a copy."""
        account = client_scenarios.register(client)
        body = self.bodies.jpeg
        image = client_scenarios.upload(client, account.token, body.data, body.filename, body.content_type)
        client_scenarios.wait_for_thumbnail(client, image["id"])
        name = "upload_200k_duplicate"
        lua = self.lua(name, account, body, unique=False)
        self.run.wrk(name, server, UPLOAD_PATH, connections=UPLOAD_CONNECTIONS, lua=lua)
        counted = self.run.database.uploads_of(account.user_id)
        if counted["contents"] != 1:
            raise RuntimeError(f"{name}: one body was stored as {counted['contents']} contents")
        self.run.scenarios[name].update(counted)

    def unique(
        self,
        name: str,
        server: Service,
        account: Account,
        body: UploadBody,
        *,
        connections: int = UPLOAD_CONNECTIONS,
        duration: int | None = None,
    ) -> None:
        lua = self.lua(name, account, body, unique=True)
        self.run.wrk(name, server, UPLOAD_PATH, connections=connections, lua=lua, duration=duration, timeout_seconds=30)
        self.run.scenarios[name].update(self.run.wait_for_thumbnails())
        self.run.scenarios[name].update(client_scenarios.all_new(self.run.database, name, account))

    def lua(self, name: str, account: Account, body: UploadBody, *, unique: bool) -> str:
        return upload_lua(
            body.data,
            account.token,
            body_path=self.run.workdir / f"{name}.body",
            filename=body.filename,
            content_type=body.content_type,
            unique=unique,
        )

    def floor(self, body: UploadBody, work: str, seconds: float) -> dict[str, Any]:
        folder = self.floor_folder / body.filename
        folder.mkdir()
        self.run.log(f"floor: {work} of {body.filename} in {upload_floor.cores()} plain loops for {seconds:g} s")
        figures = upload_floor.measure(
            body.data, seconds=seconds, processes=upload_floor.cores(), folder=folder, work=work
        )
        self.run.log(f"floor: {figures['uploads_per_s']} uploads/s, {figures['cpu_ms_per_upload']} ms of CPU each")
        return figures
