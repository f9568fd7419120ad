"""The failure scenario's clients (issue 18): uploads, reads and deletes through the balancer, every answer kept.

Each upload is new content (`images.fresh`: a phone JPEG whose ICC date is rewritten) from an address
of its own, sent as X-Forwarded-For: the balancer appends its own, trusted, address, and the app counts
the upload against the one the client named. So the load's uploads never meet the upload rate limit,
and one address sending many (`rate_limit_probe`) shows whether the limit holds across processes. An
upload is stored without its metadata: the 201 says what was stored (`checksum`, the SHA-256 of the
stored bytes, and `file_size`), and that is what every download must match. Right before the worker
tier's kill, a few big PNGs (`slow_png`) give the workers jobs slow enough to be killed while they run.

Readers pick an image that got its 201 and ask for its metadata and its file; the deleter deletes a
quarter of what was uploaded, with the upload's delete token, and retries a delete that got no answer
(a 5xx, a broken connection) until one comes. Every answer is kept with its time (seconds since the
load started), so 5xx can be set against the kills afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

import images

UPLOAD_PATH = "/api/v1/images/upload"
IMAGES_PATH = "/api/v1/images"
DELETE_SHARE = 0.25
DELETE_ATTEMPTS = 20
DELETE_RETRY_SECONDS = 0.5
IDLE_SECONDS = 0.05
PROBE_CONCURRENCY = 6


class Clock:
    """Seconds since the load started (monotonic)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.origin

    def at(self, monotonic: float) -> float:
        """A `time.monotonic()` reading on this clock."""
        return monotonic - self.origin


@dataclass(frozen=True)
class Answer:
    kind: str  # upload, metadata, file, delete, probe (the rate-limit probe's uploads)
    target: str  # "lb", or the API process asked directly
    started: float
    ended: float
    status: int  # 0: no answer (a transport error, named in `error`)
    error: str | None = None
    attempt: int = 1  # a delete's attempt number


@dataclass
class Upload:
    """One upload attempt, what its 201 said was stored, and what became of it."""

    address: str  # its X-Forwarded-For, unique per attempt (the row's upload_ip)
    sent_bytes: int
    status: int = 0
    image_id: str | None = None
    checksum: str | None = None  # SHA-256 of the stored bytes, as the 201 says
    file_size: int | None = None
    delete_token: str | None = None
    delete_started: float | None = None
    deleted: bool = False


@dataclass
class Findings:
    """What the clients saw that is wrong whenever it happens (not only around a kill)."""

    mismatched: list[str] = field(default_factory=list)  # a 200 file whose bytes are not the stored ones
    vanished: list[str] = field(default_factory=list)  # a 404 for an image no delete had been sent for
    unexpected: list[str] = field(default_factory=list)  # a 4xx no client of the scenario should get


def address_of(number: int) -> str:
    """A private address per upload attempt (10.0.0.1 on), as X-Forwarded-For."""
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


class Load:
    """Uploaders, readers and a deleter on one client of the balancer, until `stop()`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        image: bytes,
        clock: Clock,
        *,
        uploaders: int = 3,
        readers: int = 4,
        deleters: int = 1,
    ) -> None:
        self.client = client
        self.image = image
        self.clock = clock
        self.counts = {"upload": uploaders, "read": readers, "delete": deleters}
        self.answers: list[Answer] = []
        self.uploads: list[Upload] = []
        self.live: dict[str, Upload] = {}
        self.findings = Findings()
        self._addresses = (address_of(number) for number in itertools.count(1))
        self._stop = asyncio.Event()
        self._random = random.Random(18)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(self.counts["upload"]):
                group.create_task(self._uploader())
            for _ in range(self.counts["read"]):
                group.create_task(self._reader())
            for _ in range(self.counts["delete"]):
                group.create_task(self._deleter())

    async def request(
        self, kind: str, method: str, url: str, *, target: str = "lb", attempt: int = 1, **options: Any
    ) -> httpx.Response | None:
        """One request, its answer kept; None when no answer came (the error is kept instead)."""
        started = self.clock()
        try:
            response = await self.client.request(method, url, **options)
        except httpx.HTTPError as error:
            self.answers.append(Answer(kind, target, started, self.clock(), 0, type(error).__name__, attempt))
            return None
        self.answers.append(Answer(kind, target, started, self.clock(), response.status_code, None, attempt))
        return response

    async def upload(
        self,
        kind: str = "upload",
        url: str = UPLOAD_PATH,
        target: str = "lb",
        address: str | None = None,
        png: bytes | None = None,
    ) -> Upload:
        """An anonymous upload from `address` (default: one of its own) of new content: a stamped phone
        JPEG, or `png`."""
        body = images.fresh(self.image) if png is None else png
        upload = Upload(address or next(self._addresses), len(body))
        self.uploads.append(upload)
        file = ("phone.jpg", body, "image/jpeg") if png is None else ("big.png", body, "image/png")
        response = await self.request(
            kind,
            "POST",
            url,
            target=target,
            files={"file": file},
            headers={"X-Forwarded-For": upload.address},
        )
        if response is None:
            return upload
        upload.status = response.status_code
        if response.status_code == 201:
            answer = response.json()
            upload.image_id = answer["id"]
            upload.checksum = answer["checksum"]
            upload.file_size = answer["file_size"]
            upload.delete_token = answer["delete_token"]
        return upload

    async def upload_pngs(self, bodies: Sequence[bytes]) -> None:
        """Upload these PNGs at once, through the balancer, as the uploaders' own uploads are."""
        for upload in await asyncio.gather(*(self.upload(png=body) for body in bodies)):
            if upload.status == 201 and upload.image_id is not None:
                self.live[upload.image_id] = upload

    async def _uploader(self) -> None:
        while not self._stop.is_set():
            upload = await self.upload()
            if upload.status == 201 and upload.image_id is not None:
                self.live[upload.image_id] = upload
            elif upload.status and upload.status < 500:
                self.findings.unexpected.append(f"upload from {upload.address} answered {upload.status}")

    async def _reader(self) -> None:
        while not self._stop.is_set():
            if not self.live:
                await asyncio.sleep(IDLE_SECONDS)
                continue
            upload = self.live[self._random.choice(list(self.live))]
            image_path = f"{IMAGES_PATH}/{upload.image_id}"
            metadata = await self.request("metadata", "GET", image_path)
            self._judge_read(upload, metadata)
            file = await self.request("file", "GET", image_path + "/file")
            self._judge_read(upload, file)
            if file is not None and file.status_code == 200 and not _is_stored(upload, file.content):
                self.findings.mismatched.append(
                    f"{upload.image_id}: {len(file.content)} B with SHA-256 {hashlib.sha256(file.content).hexdigest()}"
                    f", stored {upload.file_size} B with {upload.checksum}"
                )

    def _judge_read(self, upload: Upload, response: httpx.Response | None) -> None:
        if response is None or response.status_code in (200, 304) or response.status_code >= 500:
            return  # no answer and 5xx are judged against the kills' times afterwards
        ended = self.answers[-1].ended
        if response.status_code == 404:
            if upload.delete_started is None or upload.delete_started > ended:
                self.findings.vanished.append(f"{response.request.url.path} answered 404 at {ended:.2f} s")
            return
        self.findings.unexpected.append(f"{response.request.url.path} answered {response.status_code}")

    async def _deleter(self) -> None:
        while not self._stop.is_set():
            started = sum(upload.delete_started is not None for upload in self.uploads)
            uploaded = sum(upload.status == 201 for upload in self.uploads)
            if not self.live or started >= DELETE_SHARE * uploaded:
                await asyncio.sleep(IDLE_SECONDS)
                continue
            upload = self.live.pop(self._random.choice(list(self.live)))
            await self.delete(upload)

    async def delete(self, upload: Upload) -> None:
        """Delete with the upload's token; a 5xx or no answer is retried, as a client would, until one comes."""
        upload.delete_started = self.clock()
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            response = await self.request(
                "delete",
                "DELETE",
                f"{IMAGES_PATH}/{upload.image_id}",
                attempt=attempt,
                headers={"X-Delete-Token": upload.delete_token or ""},
            )
            if response is not None and response.status_code < 500:
                # 404: a first server carried the delete out and died before answering, and the
                # balancer's retry (or ours) found nothing left: gone all the same.
                upload.deleted = response.status_code in (204, 404)
                if not upload.deleted:
                    self.findings.unexpected.append(f"delete of {upload.image_id} answered {response.status_code}")
                return
            await asyncio.sleep(DELETE_RETRY_SECONDS)

    def statuses(self) -> dict[str, dict[str, int]]:
        """Answers by kind, then status ("0" for none), in order."""
        by_kind: dict[str, Counter[str]] = {}
        for answer in self.answers:
            by_kind.setdefault(answer.kind, Counter())[str(answer.status)] += 1
        return {kind: dict(sorted(counts.items())) for kind, counts in sorted(by_kind.items())}


def slow_png(number: int) -> bytes:
    """A 4000x3000 PNG, small to send (a gradient) but a few tenths of a second to decode and shrink: a
    thumbnail job that lasts long enough to be killed while it runs. Each `number` is new content."""
    image = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    for x in range(64):
        image.putpixel((x, 0), (number % 256, number // 256 % 256, x))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _is_stored(upload: Upload, content: bytes) -> bool:
    return len(content) == upload.file_size and hashlib.sha256(content).hexdigest() == upload.checksum


async def rate_limit_probe(load: Load, targets: Mapping[str, str], *, limit: int, address: str) -> dict[str, Any]:
    """3 x `limit` uploads from one address, round robin over `targets` (each API process directly and the
    balancer), `PROBE_CONCURRENCY` at a time: exactly `limit` must be admitted in all, not per process."""
    order = list(targets.items())
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)
    admitted: Counter[str] = Counter()
    statuses: Counter[str] = Counter()

    async def one(index: int) -> None:
        name, base_url = order[index % len(order)]
        async with gate:
            upload = await load.upload("probe", base_url + UPLOAD_PATH, name, address)
        statuses[str(upload.status)] += 1
        if upload.status == 201:
            admitted[name] += 1
            if upload.image_id is not None:
                load.live[upload.image_id] = upload

    await asyncio.gather(*(one(index) for index in range(3 * limit)))
    return {
        "address": address,
        "limit_per_minute": limit,
        "sent": 3 * limit,
        "statuses": dict(sorted(statuses.items())),
        "admitted": sum(admitted.values()),
        "admitted_by_target": {name: admitted[name] for name, _ in order},
    }
