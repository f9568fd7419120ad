"""Every answer names its request: the id is the trusted proxy's or a new one, and a failure's log line has it."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import text

from app.config import Settings
from tests.api.apps import client_of, running_app, without_workers
from tests.factories import upload_ok

PROXY = ("10.0.0.2", 40000)


async def test_only_a_trusted_proxy_names_the_request(settings: Settings) -> None:
    proxied = settings.model_copy(update={"forwarded_allow_ips": PROXY[0]})
    async with running_app(proxied) as (app, direct), client_of(app, PROXY) as via_proxy:
        kept = await via_proxy.get("/livez", headers={"X-Request-ID": "caddy-0b7e"})
        assert kept.headers["X-Request-ID"] == "caddy-0b7e"
        for unfit in ("two words", "x" * 129, "semi;colon"):
            replaced = await via_proxy.get("/livez", headers={"X-Request-ID": unfit})
            assert replaced.headers["X-Request-ID"] != unfit
        # Anyone else's header is ignored: a client cannot pick the id its requests are logged under.
        ignored = await direct.get("/livez", headers={"X-Request-ID": "chosen-by-client"})
        assert ignored.headers["X-Request-ID"] != "chosen-by-client"
        ids = {(await direct.get("/livez")).headers["X-Request-ID"] for _ in range(20)}
        assert len(ids) == 20
        assert all(len(request_id) == 32 for request_id in ids)


async def test_an_unexpected_failure_names_its_request_in_the_answer_and_the_log(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A real 500: the database refuses the query (a column gone, as after a bad manual migration)."""
    async with running_app(without_workers(settings)) as (app, client):
        created = await upload_ok(client)
        async with app.state.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE images RENAME COLUMN filename TO filename_gone"))
        try:
            with caplog.at_level(logging.INFO):
                failed = await client.get(f"/api/v1/images/{created['id']}")
        finally:
            async with app.state.engine.begin() as connection:
                await connection.execute(text("ALTER TABLE images RENAME COLUMN filename_gone TO filename"))
    assert failed.status_code == 500
    request_id = failed.headers["X-Request-ID"]
    assert failed.json()["detail"] == {
        "code": "INTERNAL_ERROR",
        "message": "Internal server error.",
        "details": {"request_id": request_id},
    }
    about_it = [record for record in caplog.records if getattr(record, "request_id", None) == request_id]
    assert "ERROR" in {record.levelname for record in about_it}
    summary = next(record for record in about_it if record.name == "chitram.requests")
    assert (summary.route, summary.status) == ("/api/v1/images/{image_id}", 500)  # type: ignore[attr-defined]
    assert any(record.exc_info for record in about_it)  # the stack trace, under the same id
    assert str(uuid.UUID(created["id"])) not in summary.getMessage()
