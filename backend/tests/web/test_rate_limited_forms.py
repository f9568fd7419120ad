"""A person over the login limit reads why in the page, not a JSON document."""

from __future__ import annotations

from app.config import Settings
from tests.api.apps import running_app
from tests.web.helpers import PASSWORD, csrf_token


async def test_rate_limited_login_form_gets_an_html_page_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"auth_rate_limit_per_minute": 2})
    async with running_app(limited) as (_, client):
        form = {"email": "nobody@example.com", "password": PASSWORD, "csrf_token": await csrf_token(client)}
        statuses = [(await client.post("/login", data=form)).status_code for _ in range(2)]
        assert statuses == [401, 401]
        refused = await client.post("/login", data=form, headers={"Accept": "text/html"})
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("text/html")
        assert int(refused.headers["retry-after"]) >= 1
        assert "Too many attempts" in refused.text
        assert "RATE_LIMIT_EXCEEDED" not in refused.text  # words, not the API's envelope
        fragment = await client.post("/login", data=form, headers={"HX-Request": "true"})
        assert fragment.status_code == 429
        assert "<html" not in fragment.text
        assert "Too many attempts" in fragment.text
