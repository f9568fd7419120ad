"""Ready-made uploader settings for a new API key: a ShareX custom uploader (`.sxcu`) and shell lines.

Pure functions of the server's public base URL and the key, so the web page that shows a key once can
offer them for download. The API answers with links relative to the server, so every template here
prefixes the base URL. ShareX reads `{json:path}` as a JSON path into the response body.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

UPLOAD_PATH = "/api/v1/images/upload"
SHAREX_VERSION = "15.0.0"


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def sharex_config(base_url: str, api_key: str, name: str, *, thumbnail_width: int | None = 300) -> dict[str, Any]:
    """A ShareX custom image uploader posting to this server with `api_key`; save as JSON (`.sxcu`).

    `thumbnail_width` must be one of the server's VARIANT_WIDTHS (None: the original): the response's
    `thumbnail_url` is null until the background thumbnail exists, which is usually after ShareX reads it.
    """
    base = _base(base_url)
    file_url = base + "{json:url}"
    return {
        "Version": SHAREX_VERSION,
        "Name": name,
        "DestinationType": "ImageUploader",
        "RequestMethod": "POST",
        "RequestURL": base + UPLOAD_PATH,
        "Headers": {"X-API-Key": api_key},
        "Body": "MultipartFormData",
        "FileFormName": "file",
        "URL": file_url,
        "ThumbnailURL": f"{file_url}?w={thumbnail_width}" if thumbnail_width else file_url,
        "ErrorMessage": "{json:detail.message}",
    }


def sharex_file_name(name: str) -> str:
    """A safe download name for the `.sxcu` file of `name` (`Chitram (laptop).sxcu`)."""
    cleaned = re.sub(r"[^\w .()-]+", "_", name).strip(" ._") or "Chitram"
    return f"{cleaned[:80]}.sxcu"


def shell_snippet(base_url: str, api_key: str) -> str:
    """Shell lines: a Flameshot capture piped to the server printing its link (needs jq), and plain curl."""
    base = _base(base_url)
    header = shlex.quote(f"X-API-Key: {api_key}")
    upload_url = shlex.quote(base + UPLOAD_PATH)
    # The API's links are relative, so jq prefixes the server; a refusal's message goes to stderr instead.
    to_link = "jq -r " + shlex.quote(f'"{base}" + (.url // error(.detail.message))')
    curl = f"curl -sS --fail-with-body -H {header}"
    return (
        "# Flameshot: pick a region, upload it, print its link (add `| xclip -selection clipboard` to copy it)\n"
        f'flameshot gui --raw | {curl} -F "file=@-;filename=screenshot.png" {upload_url} | {to_link}\n'
        "# Any image file; prints the JSON answer (its `url` is relative to the server)\n"
        f'{curl} -F "file=@picture.png" {upload_url}\n'
    )
