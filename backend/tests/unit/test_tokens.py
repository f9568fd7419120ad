"""Access tokens are verified once and then remembered: what is remembered must still expire on time."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest

from app.errors import TokenExpired, Unauthorized
from app.services.tokens import ALGORITHM, ISSUER, create_access_token, decode_access_token

SECRET = "unit-test-secret-" + "x" * 32


def test_a_remembered_token_still_expires() -> None:
    user_id = uuid.uuid4()
    expires_at = int(time.time()) + 1
    claims = {"sub": str(user_id), "iat": int(time.time()), "exp": expires_at, "iss": ISSUER}
    token = jwt.encode(claims, SECRET, algorithm=ALGORITHM)
    assert decode_access_token(token, secret=SECRET).user_id == user_id  # verified, and now remembered
    while time.time() < expires_at:
        time.sleep(0.05)
    with pytest.raises(TokenExpired):
        decode_access_token(token, secret=SECRET)


def test_a_token_is_remembered_only_for_the_secret_that_signed_it() -> None:
    user_id = uuid.uuid4()
    token, _ = create_access_token(user_id, secret=SECRET, expire_minutes=5)
    assert decode_access_token(token, secret=SECRET).user_id == user_id
    with pytest.raises(Unauthorized):
        decode_access_token(token, secret="another-secret-" + "y" * 32)  # a rotated secret ends old tokens


def test_a_bad_token_is_refused_every_time() -> None:
    user_id = uuid.uuid4()
    token, _ = create_access_token(user_id, secret=SECRET, expire_minutes=5)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            decode_access_token(forged, secret=SECRET)
    past = datetime(2020, 1, 1, tzinfo=UTC)
    expired = jwt.encode({"sub": str(user_id), "iat": past, "exp": past, "iss": ISSUER}, SECRET, algorithm=ALGORITHM)
    for _ in range(2):
        with pytest.raises(TokenExpired):
            decode_access_token(expired, secret=SECRET)
