"""The claims this project's own issuers (the CLI's `token`, the demo issuer) put in a token.
Signing is the key's (authenticator/core/keys.py, VerificationKey.sign); verifying is
authenticator/core/tokens.py. Your application mints its own tokens: docs/tokens.md."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any


def user_claims(sub: str, roles: Iterable[str], ttl: int, *, now: float | None = None, jti: bool = True) -> dict:
    """The claims this project's own issuers (CLI, demo issuer) put in a token."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": sub, "roles": list(roles), "iat": issued, "exp": issued + ttl}
    if jti:
        claims["jti"] = uuid.uuid4().hex
    return claims


def realm_binding(claim_rules) -> dict:
    """The claim that names the realm a token is for (ClaimRules.realm_claim: "aud", another claim,
    or None on a node with one realm), as this project's issuers add it."""
    if claim_rules.realm_claim is None or claim_rules.realm is None:
        return {}
    return {claim_rules.realm_claim: claim_rules.realm}
