"""One error shape everywhere, health checks, and what clients see when a dependency dies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from moto.server import ThreadedMotoServer
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from tests.api.apps import running_app, without_workers
from tests.api.helpers import image_row_count
from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from tests.error_checks import without_request_id
from tests.factories import make_jpeg, token_of, upload, upload_ok
from tests.servers import free_port


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


async def test_unknown_route_is_not_found_in_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert {**detail, "details": without_request_id(detail["details"])} == {
        "code": "NOT_FOUND",
        "message": "Not Found",
        "details": {},
    }
    # The id in the envelope is the answer's own, so a user's report leads to the server's log line.
    assert detail["details"]["request_id"] == response.headers["X-Request-ID"]


async def test_wrong_method_is_method_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/images/upload")
    assert response.status_code == 405
    assert response.json()["detail"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/images/upload", "POST"),  # not also the methods of /api/v1/images/{image_id}
        (f"/api/v1/images/{uuid.UUID(int=1)}", "DELETE, GET, PATCH"),
        (f"/api/v1/images/{uuid.UUID(int=1)}/file", "GET, HEAD"),
        ("/login", "GET, POST"),
    ],
)
async def test_method_not_allowed_lists_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await client.request("PUT", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed


async def test_health_reports_healthy_with_real_checks(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "connected"
    assert body["storage"] == "connected"
    assert body["environment"] == "development"
    assert body["version"]


async def test_openapi_documents_every_endpoint_and_error_code(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/api/v1/images/upload"]) == {"post"}
    upload_op = paths["/api/v1/images/upload"]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    described = " ".join(response["description"] for response in upload_op["responses"].values())
    for code in ("FILE_TOO_LARGE", "INVALID_FILE_FORMAT", "INVALID_IMAGE", "IMAGE_DIMENSIONS_EXCEEDED"):
        assert code in described
    assert {"get", "head"} <= set(paths["/api/v1/images/{image_id}/file"])
    assert "IMAGE_NOT_FOUND" in paths["/api/v1/images/{image_id}"]["get"]["responses"]["404"]["description"]
    assert "delete" in paths["/api/v1/images/{image_id}"]
    assert "/health" in paths
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_openapi_describes_the_frameworks_own_errors_in_the_envelope(client: httpx.AsyncClient) -> None:
    """FastAPI's validation and body-parsing errors are documented as the handlers send them."""
    spec = (await client.get("/openapi.json")).json()
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])
    envelope = {"$ref": "#/components/schemas/ErrorResponse"}
    login = spec["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert login["422"]["content"]["application/json"]["schema"] == envelope
    assert "VALIDATION_ERROR" in login["422"]["description"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                unparseable_body = operation["responses"]["400"]["content"]["application/json"]["schema"]
                assert unparseable_body == envelope, f"{method.upper()} {path}"


@pytest.fixture
async def s3_app(postgres_url: str) -> AsyncIterator[tuple[FastAPI, ThreadedMotoServer]]:
    """An app on its own moto server, which the test may stop to make S3 go away."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = Settings(
        database_url=postgres_url,
        storage_backend="minio",
        minio_endpoint=f"{host}:{port}",
        minio_access_key=S3_ACCESS_KEY,
        minio_secret_key=S3_SECRET_KEY,
        minio_bucket=f"test-{uuid.uuid4().hex[:12]}",
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            yield app, server
    finally:
        server.stop()
        from tests.conftest import _truncate_tables

        await _truncate_tables(postgres_url)


async def test_storage_down_during_upload_is_503_and_keeps_no_row(
    s3_app: tuple[FastAPI, ThreadedMotoServer],
) -> None:
    app, server = s3_app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        server.stop()
        response = await upload(client, make_jpeg())
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "STORAGE_UNAVAILABLE"
        assert await image_row_count(app) == 0
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert health.json()["storage"] == "disconnected"
        assert health.json()["database"] == "connected"
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["status"], ready.json()["storage"]) == (503, "unready", "disconnected")
        assert (await client.get("/livez")).json() == {"status": "alive"}  # alive: restarting it would not help


async def test_storage_down_during_delete_still_deletes_the_row(
    s3_app: tuple[FastAPI, ThreadedMotoServer], caplog: pytest.LogCaptureFixture
) -> None:
    app, server = s3_app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        created = await upload_ok(client)
        server.stop()
        response = await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))
        assert response.status_code == 204
        assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 404
    assert await image_row_count(app) == 0
    assert any("could not be collected" in record.getMessage() for record in caplog.records)


async def test_storage_down_during_download_is_503(s3_app: tuple[FastAPI, ThreadedMotoServer]) -> None:
    app, server = s3_app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        created = await upload_ok(client)
        server.stop()
        response = await client.get(created["url"])
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "STORAGE_UNAVAILABLE"


async def test_connections_the_database_closed_are_replaced_not_failed(settings: Settings) -> None:
    """A database restart closes every pooled connection; the requests after it get new ones.

    Caused for real: pg_terminate_backend ends each of the app's connections but the asking one,
    as a restart or a server-side idle timeout would. (No thumbnail workers: a job cut off mid-query
    is the sweeper's business, not this test's.)
    """
    async with running_app(without_workers(settings)) as (app, client):
        created = await asyncio.gather(*(upload_ok(client) for _ in range(4)))  # pooled connections
        async with app.state.engine.connect() as connection:
            ended = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        assert ended >= 1
        await asyncio.sleep(0.1)  # the server's goodbye reaches the sockets, as it has long before a later request
        for _ in range(4):
            uploaded = await upload(client, make_jpeg())  # the INSERT checks out a pooled connection
            assert uploaded.status_code == 201, uploaded.text
        for image in created:  # pending thumbnails are not cached: each read goes to the database
            assert (await client.get(f"/api/v1/images/{image['id']}")).status_code == 200


async def test_database_down_makes_health_unhealthy_and_requests_503(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/chitram",
        storage_backend="local",
        local_storage_path=tmp_path,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert health.json()["database"] == "disconnected"
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["status"], ready.json()["database"]) == (503, "unready", "disconnected")
        assert (await client.get("/livez")).status_code == 200
        assert health.json()["storage"] == "connected"
        response = await client.get(f"/api/v1/images/{uuid.uuid4()}")
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
        uploaded = await upload(client, make_jpeg())
        assert uploaded.status_code == 503
    assert stored_files(tmp_path) == []  # no orphan blob when the row could not be written
