"""The account's pages in the web UI: usage, password, deleting the account, and API keys for tools.

A new key's text exists only in the answer to the form that made it (and in the uploader files that
answer offers): it is never stored, logged or put in a URL. The ShareX file is therefore downloaded
by a POST that carries the key in its body, like every other form here, with the CSRF token.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from app.api.deps import CacheDep, SessionDep, SettingsDep
from app.api.web_pages import SessionExpired, WebUserDep
from app.api.web_support import check_csrf, logged_in_redirect, login_url, render
from app.errors import ApiKeyNotFound, AppError
from app.models import User
from app.schemas.account import ApiKeyCreate, PasswordChange
from app.services import account_service, api_keys, uploader_configs, usage

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=1024)]
OptionalFormText = Annotated[str | None, Form(max_length=1024)]
DELETE_WORD = "DELETE"


def _validation_message(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors())


def _required(user: User | None, path: str) -> User:
    """The logged-in user; a visitor (or a session that ended) goes to log in and comes back."""
    if user is None:
        raise SessionExpired(path)
    return user


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _account_page(user: User, settings: SettingsDep, **context: Any) -> dict[str, Any]:
    return {**usage.usage_of(user, settings).model_dump(), **context}


@router.get("/account")
async def account_page(request: Request, user: WebUserDep, settings: SettingsDep) -> Response:
    """Usage, and the forms that change the password and delete the account."""
    if user is None:
        return RedirectResponse(login_url("/account"), status_code=303)
    return render(request, "account.html", _account_page(user, settings))


@router.post("/account/password")
async def change_password(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: WebUserDep,
    current_password: FormText,
    new_password: FormText,
    confirm_password: FormText,
    csrf_token: OptionalFormText = None,
) -> Response:
    """A new password: this browser gets a fresh session, every other session and token ends."""
    check_csrf(request, csrf_token)
    account = _required(user, "/account")

    def refused(message: str, status_code: int) -> Response:
        context = _account_page(account, settings, password_error=message)
        return render(request, "account.html", context, status_code=status_code)

    if new_password != confirm_password:
        return refused("The new password and its confirmation differ.", 422)
    try:
        change = PasswordChange(current_password=current_password, new_password=new_password)
    except ValidationError:
        return refused("The new password must be 8 to 128 characters long.", 422)
    try:
        changed = await account_service.change_password(session, account, change.current_password, change.new_password)
    except AppError as error:
        return refused(error.message, error.status_code)
    return logged_in_redirect(request, changed, "/account?password=changed", settings)


@router.post("/account/delete")
async def delete_account(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cache: CacheDep,
    user: WebUserDep,
    password: FormText,
    confirm: FormText,
    csrf_token: OptionalFormText = None,
) -> Response:
    """End the account (password and the word DELETE): logged out, its images gone, its keys revoked."""
    check_csrf(request, csrf_token)
    account = _required(user, "/account")
    if confirm.strip() != DELETE_WORD:
        context = _account_page(account, settings, delete_error=f"Type {DELETE_WORD} to confirm.")
        return render(request, "account.html", context, status_code=422)
    try:
        await account_service.delete_account(session, account, password, forget_cached=cache.invalidate)
    except AppError as error:
        context = _account_page(account, settings, delete_error=error.message)
        return render(request, "account.html", context, status_code=error.status_code)
    response = RedirectResponse("/?account_deleted=1", status_code=303)
    response.delete_cookie(request.app.state.session_cookie_name, path="/")
    return response


async def _keys_page(
    request: Request, session: SessionDep, user: User, *, status_code: int = 200, **context: Any
) -> Response:
    keys = [api_keys.describe_key(key) for key in await api_keys.list_keys(session, user)]
    full_context = {"keys": keys, "scopes": api_keys.SCOPES, "chosen_scopes": api_keys.SCOPES, **context}
    return render(request, "api_keys.html", full_context, status_code=status_code)


@router.get("/account/keys")
async def keys_page(request: Request, session: SessionDep, user: WebUserDep) -> Response:
    """The account's API keys, and the form that makes a new one."""
    if user is None:
        return RedirectResponse(login_url("/account/keys"), status_code=303)
    return await _keys_page(request, session, user)


@router.post("/account/keys")
async def create_key(
    request: Request,
    session: SessionDep,
    user: WebUserDep,
    name: Annotated[str, Form(max_length=200)],
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_in_days: Annotated[str | None, Form(max_length=10)] = None,
    csrf_token: OptionalFormText = None,
) -> Response:
    """A new key, shown on the answer to this form only, with its uploader configs."""
    check_csrf(request, csrf_token)
    account = _required(user, "/account/keys")
    form = {"name": name, "chosen_scopes": scopes or [], "expires_in_days": expires_in_days or ""}
    try:
        asked = ApiKeyCreate.model_validate(
            {"name": name, "scopes": scopes or [], "expires_in_days": (expires_in_days or "").strip() or None}
        )
    except ValidationError as error:
        problems = {str(item["loc"][0]) for item in error.errors()}
        message = (
            "Choose at least one scope."
            if problems == {"scopes"}
            else "Give the key a name (up to 100 characters)."
            if problems == {"name"}
            else "Expiry is a whole number of days from 1 to 3650."
            if problems == {"expires_in_days"}
            else _validation_message(error)
        )
        return await _keys_page(request, session, account, status_code=422, error=message, **form)
    key, text = await api_keys.create_key(
        session, account, name=asked.name, scopes=asked.scopes, expires_in_days=asked.expires_in_days
    )
    base_url = _base_url(request)
    created = {
        "new_key": text,
        "new_key_name": key.name,
        "new_key_can_upload": "images:upload" in key.scopes,
        "shell_snippet": uploader_configs.shell_snippet(base_url, text),
    }
    return await _keys_page(request, session, account, status_code=201, **created)


@router.post("/account/keys/sharex")
async def sharex_config(
    request: Request,
    session: SessionDep,
    user: WebUserDep,
    api_key: Annotated[str, Form(max_length=200)],
    name: Annotated[str, Form(max_length=200)] = "Chitram",
    csrf_token: OptionalFormText = None,
) -> Response:
    """The ShareX custom uploader (`.sxcu`) for one of this account's keys, as a download."""
    check_csrf(request, csrf_token)
    account = _required(user, "/account/keys")
    parts = api_keys.split_key(api_key)
    owned = {key.public_id for key in await api_keys.list_keys(session, account)}
    if parts is None or parts[0] not in owned:
        # Only a key of this account, so the page cannot be made to wrap someone else's text in a file.
        context = {"title": "Not made", "message": "That is not one of your API keys.", "back": "/account/keys"}
        return render(request, "error.html", {**context, "back_label": "Back to API keys"}, status_code=404)
    label = f"Chitram ({name.strip()})" if name.strip() else "Chitram"
    body = json.dumps(uploader_configs.sharex_config(_base_url(request), api_key, label), indent=2)
    filename = uploader_configs.sharex_file_name(label)
    # Headers are Latin-1: a plain fallback name, and the real one encoded for browsers that read it.
    plain_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f"attachment; filename=\"{plain_name}\"; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/account/keys/{key_id}/revoke")
async def revoke_key(
    key_id: str,
    request: Request,
    session: SessionDep,
    user: WebUserDep,
    csrf_token: OptionalFormText = None,
) -> Response:
    """Revoke a key: it stops working at once."""
    check_csrf(request, csrf_token)
    account = _required(user, "/account/keys")
    destination = "/account/keys?revoked=1"
    try:
        await api_keys.revoke_key(session, account, uuid.UUID(key_id))
    except (ValueError, ApiKeyNotFound):
        destination = "/account/keys?missing=1"
    if request.headers.get("HX-Request"):
        return Response(status_code=200, headers={"HX-Redirect": destination})
    return RedirectResponse(destination, status_code=303)
