"""Mint test tokens the way an application would, with PyJWT."""

from __future__ import annotations

import itertools
import secrets
import time

import jwt

TEST_SECRET = "test-" + secrets.token_urlsafe(32)


def mint(
    sub: str | None = "alice",
    roles=("user",),
    ttl: float = 300,
    *,
    secret: str = TEST_SECRET,
    algorithm: str = "HS256",
    headers: dict | None = None,
    now: float | None = None,
    **claims,
) -> str:
    now = time.time() if now is None else now
    payload = {"iat": int(now), "exp": int(now + ttl)}
    if sub is not None:
        payload["sub"] = sub
    if roles is not None:
        payload["roles"] = list(roles) if isinstance(roles, tuple | list) else roles
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


_serial = itertools.count()


def unique(name: str) -> str:
    """A fresh authid per test: Crossbar's authorization cache and the revocation store outlive a test."""
    return f"{name}{next(_serial)}"
