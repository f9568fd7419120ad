"""What the commands print: sizes, times, absolute links and the image table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table


def human_size(size_bytes: object) -> str:
    """`6.3 KiB` for 6412 bytes; `?` for a value that is not a number."""
    if not isinstance(size_bytes, int | float) or isinstance(size_bytes, bool):
        return "?"
    value = float(size_bytes)
    if abs(value) < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def local_time(iso_timestamp: object) -> str:
    """An ISO 8601 timestamp from the API in this machine's time zone, to the minute; `-` for none."""
    if not isinstance(iso_timestamp, str):
        return "-"
    try:
        moment = datetime.fromisoformat(iso_timestamp.replace("Z", "+00:00"))
    except ValueError:
        return iso_timestamp
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def absolute(base_url: str, path: object) -> str | None:
    """The API gives links relative to the server; printed links must work when pasted anywhere."""
    if not isinstance(path, str):
        return None
    return path if "://" in path else base_url.rstrip("/") + "/" + path.lstrip("/")


def with_absolute_links(base_url: str, image: dict[str, Any]) -> dict[str, Any]:
    """The image's JSON with `url`, `page_url` and `thumbnail_url` made absolute (for --json)."""
    linked = dict(image)
    for field in ("url", "page_url", "thumbnail_url"):
        if field in linked:
            linked[field] = absolute(base_url, linked[field])
    if linked.get("page_url") is None and "id" in linked:
        linked["page_url"] = page_url(base_url, str(linked["id"]))
    return linked


def page_url(base_url: str, image_id: str) -> str:
    """The image's page in the web UI."""
    return f"{base_url.rstrip('/')}/image/{image_id}"


def image_table(images: list[dict[str, Any]]) -> Table:
    """`chitram ls`: one row per image, newest first as the server sends them."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "name", "size", "visibility", "expires", "created"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=column == "id")
    for image in images:
        table.add_row(
            str(image.get("id", "?")),
            str(image.get("filename", "")),
            human_size(image.get("file_size")),
            str(image.get("visibility", "unlisted")),
            local_time(image.get("expires_at")) if image.get("expires_at") else "never",
            local_time(image.get("created_at")),
        )
    return table
