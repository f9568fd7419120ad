"""Form posts and HTMX actions of the web UI: log in, register, log out, upload, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from app.api.deps import (
    CacheDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    StorageDep,
    ThumbnailsDep,
    UploadSlotDep,
)
from app.api.upload_body import store_upload
from app.api.web_pages import WebUserDep
from app.api.web_support import check_csrf, logged_in_redirect, render, safe_next
from app.database import abandon
from app.errors import AppError, DeleteTokenRequired, ImageNotFound, InvalidCredentials
from app.observability.metrics import UPLOADS
from app.schemas.image import ImageRead
from app.schemas.user import UserCreate
from app.services import auth_service, image_service
from app.services.credentials import Uploader, login_principal

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=1024)]
OptionalFormText = Annotated[str | None, Form(max_length=1024)]


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: FormText,
    password: FormText,
    csrf_token: OptionalFormText = None,
    next: OptionalFormText = None,
) -> Response:
    check_csrf(request, csrf_token)
    try:
        user = await auth_service.authenticate(session, email, password)
    except InvalidCredentials as error:
        context = {"error": error.message, "email": email, "next": safe_next(next)}
        return render(request, "login.html", context, status_code=401)
    return logged_in_redirect(request, user, next or "/", settings)


@router.post("/register")
async def register(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: FormText,
    password: FormText,
    csrf_token: OptionalFormText = None,
    next: OptionalFormText = None,
) -> Response:
    check_csrf(request, csrf_token)
    context = {"email": email, "next": safe_next(next)}
    try:
        account = UserCreate(email=email, password=password)
    except ValidationError as error:
        messages = [f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()]
        return render(request, "register.html", {**context, "error": "; ".join(messages)}, status_code=422)
    try:
        user = await auth_service.register_user(session, account.email, account.password)
    except AppError as error:
        # A lost registration race leaves the transaction failed: undo it before answering.
        await abandon(session)
        return render(request, "register.html", {**context, "error": error.message}, status_code=error.status_code)
    return logged_in_redirect(request, user, next or "/", settings)


@router.post("/logout")
async def logout(request: Request, csrf_token: OptionalFormText = None) -> Response:
    check_csrf(request, csrf_token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(request.app.state.session_cookie_name, path="/")
    return response


@router.post("/upload")
async def upload(
    _slot: UploadSlotDep,
    request: Request,
    storage: StorageDep,
    settings: SettingsDep,
    thumbnails: ThumbnailsDep,
    user: WebUserDep,
) -> Response:
    """HTMX upload: the CSRF token travels in the header, so it is checked before the body is read."""
    check_csrf(request)
    if user is None and not settings.allow_anonymous_uploads:
        return render(request, "_upload_error.html", {"message": "Log in to upload."}, status_code=401)
    owner = None if user is None else Uploader(user.id)
    sessionmaker = request.app.state.sessionmaker
    try:
        image, delete_token = await store_upload(request, sessionmaker, storage, settings, thumbnails, owner=owner)
    except AppError as error:
        UPLOADS.labels(error.code).inc()
        # Nothing to undo: an upload that fails writes no row and leaves no blob behind.
        return render(request, "_upload_error.html", {"message": error.message}, status_code=error.status_code)
    if delete_token is None:
        return Response(status_code=200, headers={"HX-Redirect": f"/image/{image.id}"})
    described = ImageRead.describe(image, settings.variant_widths)
    return render(request, "_upload_result.html", {"image": described, "delete_token": delete_token})


@router.post("/image/{image_id}/delete")
async def delete(
    image_id: str,
    request: Request,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    storage: StorageDep,
    cache: CacheDep,
    user: WebUserDep,
    csrf_token: OptionalFormText = None,
    delete_token: OptionalFormText = None,
) -> Response:
    check_csrf(request, csrf_token)
    from_htmx = bool(request.headers.get("HX-Request"))
    try:
        image = await image_service.get_image(session, image_id)
        image_service.authorize_delete(image, None if user is None else login_principal(user), delete_token or None)
    except ImageNotFound:
        if from_htmx:
            return render(request, "_error.html", {"message": "This image no longer exists."}, status_code=404)
        return render(request, "404.html", {"what": "image"}, status_code=404)
    except AppError as error:
        # The API's wording names its header; a person filled in a field.
        message = "Enter the image's delete token." if isinstance(error, DeleteTokenRequired) else error.message
        if from_htmx:
            return render(request, "_error.html", {"message": message}, status_code=error.status_code)
        context = {"title": "Not deleted", "message": message, "back": f"/image/{image.id}", "back_label": "Back"}
        return render(request, "error.html", context, status_code=error.status_code)
    await image_service.delete_image(session, sessionmaker, storage, image, forget_cached=cache.invalidate)
    destination = "/my-images?deleted=1" if user is not None else "/?deleted=1"
    if from_htmx:
        return Response(status_code=200, headers={"HX-Redirect": destination})
    return RedirectResponse(destination, status_code=303)
