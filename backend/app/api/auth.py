"""Accounts: register, log in (JSON or OAuth2 form), and who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import CurrentPrincipalDep, SessionDep, SettingsDep
from app.errors import EmailExists, InvalidCredentials, RateLimitExceeded, TokenExpired, Unauthorized, ValidationFailed
from app.models import User
from app.schemas.errors import error_responses
from app.schemas.user import AuthResponse, OAuth2TokenResponse, UserCreate, UserLogin, UserRead
from app.services import auth_service

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _auth_response(request: Request, user: User, expire_minutes: int) -> AuthResponse:
    return auth_service.login_answer(user, secret=request.app.state.jwt_secret, expire_minutes=expire_minutes)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=AuthResponse,
    responses=error_responses(EmailExists, ValidationFailed, RateLimitExceeded),
)
async def register(body: UserCreate, request: Request, session: SessionDep, settings: SettingsDep) -> AuthResponse:
    """Create an account and log it in."""
    user = await auth_service.register_user(session, body.email, body.password)
    return _auth_response(request, user, settings.jwt_expire_minutes)


@router.post("/login", response_model=AuthResponse, responses=error_responses(InvalidCredentials, RateLimitExceeded))
async def login(body: UserLogin, request: Request, session: SessionDep, settings: SettingsDep) -> AuthResponse:
    """Exchange email and password for an access token."""
    user = await auth_service.authenticate(session, body.email, body.password)
    return _auth_response(request, user, settings.jwt_expire_minutes)


@router.post(
    "/token", response_model=OAuth2TokenResponse, responses=error_responses(InvalidCredentials, RateLimitExceeded)
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, session: SessionDep, settings: SettingsDep
) -> OAuth2TokenResponse:
    """OAuth2 password flow (the `username` field is the email), for Swagger UI's Authorize button."""
    user = await auth_service.authenticate(session, form.username, form.password)
    return OAuth2TokenResponse(access_token=_auth_response(request, user, settings.jwt_expire_minutes).access_token)


@router.get("/me", response_model=UserRead, responses=error_responses(Unauthorized, TokenExpired))
async def me(principal: CurrentPrincipalDep) -> UserRead:
    """The account the access token (or API key) belongs to."""
    return UserRead.model_validate(principal.user)
