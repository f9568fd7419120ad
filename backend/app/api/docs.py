"""Swagger UI at /docs, from our own /static: no CDN, so it works offline and leaks no visitors."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

SWAGGER_UI_DIR = "vendor/swagger-ui-5.35.0"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    static_url = request.app.state.templates.env.globals["static_url"]
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title="Chitram API",
        swagger_js_url=static_url(f"{SWAGGER_UI_DIR}/swagger-ui-bundle.js"),
        swagger_css_url=static_url(f"{SWAGGER_UI_DIR}/swagger-ui.css"),
        swagger_favicon_url=static_url(f"{SWAGGER_UI_DIR}/favicon-32x32.png"),
        # Keep the token from Authorize across reloads of the page.
        swagger_ui_parameters={"persistAuthorization": True},
    )
