"""The Chitram HTTP API as the command line uses it (httpx, synchronous).

Every method returns parsed JSON or raises `CliError`: a request that got no answer becomes exit
code 3, a refused one the code of its kind (see `errors`). Uploads stream the file from disk
through httpx's multipart encoder, reporting each chunk as it is handed to the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from chitram_cli import __version__
from chitram_cli.errors import CliError, ExitCode, error_from_response, error_from_transport

# Connecting should be quick; an upload's answer waits for the server to check and store the image.
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
KEY_SCOPES = ("images:read", "images:upload", "images:delete")
MAX_PAGE = 100


class _CountedStream(httpx.SyncByteStream):
    """A request body that reports the size of each chunk once the connection has taken it."""

    def __init__(self, body: httpx.SyncByteStream, on_sent: Callable[[int], None]) -> None:
        self._body = body
        self._on_sent = on_sent

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            yield chunk
            self._on_sent(len(chunk))


class ChitramClient:
    """One server, with or without an API key (sent as `X-API-Key`)."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url
        headers = {"User-Agent": f"chitram-cli/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._http.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._http.send(request)
        except httpx.TransportError as error:
            raise error_from_transport(error, self.base_url) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _json(self, method: str, path: str, **options: Any) -> Any:
        response = self._send(self._http.build_request(method, path, **options))
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.base_url} answered {response.status_code} without JSON: is it a Chitram server?"
            ) from None

    def login(self, email: str, password: str) -> str:
        """A short-lived access token (JWT) for `email`."""
        body = self._json("POST", "/api/v1/auth/login", json={"email": email, "password": password})
        return str(body["access_token"])

    def create_api_key(self, access_token: str, name: str) -> dict[str, Any]:
        """A new key with every image scope; its secret is in `key`, this once."""
        created: dict[str, Any] = self._json(
            "POST",
            "/api/v1/users/me/api-keys",
            json={"name": name, "scopes": list(KEY_SCOPES)},
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return created

    def me(self) -> dict[str, Any]:
        """The account the key belongs to."""
        account: dict[str, Any] = self._json("GET", "/api/v1/auth/me")
        return account

    def upload(
        self,
        path: Path,
        *,
        visibility: str | None = None,
        expires_in: str | None = None,
        on_sent: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload one file; `on_sent(sent, total)` follows the body's bytes (multipart framing included)."""
        fields = {"visibility": visibility, "expires_in": expires_in}
        try:
            file = path.open("rb")
        except OSError as error:
            raise CliError(f"{path}: {error.strerror or error}", ExitCode.LOCAL_FILE, code="LOCAL_FILE") from None
        with file:
            request = self._http.build_request(
                "POST",
                "/api/v1/images/upload",
                data={name: value for name, value in fields.items() if value is not None},
                # The server tells the format from the bytes; a type guessed from the name could only contradict
                # them (a PNG saved as .jpg would be refused as a mismatch).
                files={"file": (path.name, file, "application/octet-stream")},
            )
            if on_sent is not None:
                total = int(request.headers.get("content-length", "0"))
                sent = 0

                def count(chunk_size: int) -> None:
                    nonlocal sent
                    sent += chunk_size
                    on_sent(sent, total)

                assert isinstance(request.stream, httpx.SyncByteStream)
                request.stream = _CountedStream(request.stream, count)
            image: dict[str, Any] = self._send(request).json()
        return image

    def list_images(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` of the account's images, newest first, over as many pages as it takes."""
        images: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(images) < limit:
            params: dict[str, str | int] = {"limit": min(MAX_PAGE, limit - len(images))}
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", "/api/v1/users/me/images", params=params)
            images.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return images[:limit]

    def get_image(self, image_id: str) -> dict[str, Any]:
        """One image's metadata (a private one only for its owner)."""
        image: dict[str, Any] = self._json("GET", f"/api/v1/images/{image_id}")
        return image

    def delete_image(self, image_id: str) -> None:
        """Delete one of the account's images, with every file made from it."""
        self._json("DELETE", f"/api/v1/images/{image_id}")
