"""The rules of the authenticator's own procedures, pure: when a refresh may extend a session,
and what a revocation covers. authenticator/server/procedures.py applies them."""

from __future__ import annotations

from collections.abc import Iterable

from authenticator.core.policy import Grant
from authenticator.core.reasons import Reason, Rejected
from authenticator.core.settings import ClaimRules
from authenticator.core.tokens import Identity

MAX_ID = 1024  # characters of an authid or a jti a revocation may name


def refresh_refusal(session_authid: str, session_roles: frozenset[str], identity: Identity,
                    session_grants: Iterable[Grant] = ()) -> Rejected | None:  # fmt: skip
    """Why a verified token cannot extend this live session, or None: it must be for the same
    user with the same roles and the same grants. Crossbar cannot change a live session's role, so a
    token with other roles (fewer, for a demoted user) needs a new session, and the old deadline stays.

    Grants likewise: more would widen the session. Fewer are refused too, rather than taken away
    from the live session: Crossbar never asks again about a subscription or registration it has
    allowed, and a publication decision kept on the session (patches/publish_decisions.py) is
    reused, so narrowing the table would only look safe. The session keeps what it had until its
    old deadline; the kits reconnect at once with the new token on refresh_refused."""
    if identity.authid != session_authid:
        return Rejected(Reason.REFRESH_REFUSED, "it is for another user", authid=session_authid, jti=identity.jti)
    if frozenset(identity.roles) != session_roles:
        return Rejected(Reason.REFRESH_REFUSED, "its roles differ from the session's; reconnect with it",
                        authid=session_authid, jti=identity.jti)  # fmt: skip
    if _granted(identity.grants) != _granted(session_grants):
        return Rejected(Reason.REFRESH_REFUSED, "its grants (caps) differ from the session's; reconnect with it",
                        authid=session_authid, jti=identity.jti)  # fmt: skip
    return None


def _granted(grants: Iterable[Grant]) -> frozenset[tuple[str, str, frozenset[str]]]:
    """What grants give, whatever their order in the claim."""
    return frozenset((g.uri, g.match, g.allow) for g in grants)


def revocation_problem(authid: object, jti: object) -> str | None:
    """What is wrong with a revocation request, or None."""
    if (authid is None and jti is None) or not all(_bounded_text(v) for v in (authid, jti)):
        return f"Call revoke with authid='...' or jti='...' (at most {MAX_ID} characters)."
    return None


def revocation_keep_seconds(claims: ClaimRules) -> float | None:
    """How long a revocation must be kept: the latest token it covers has iat = now + leeway and is
    accepted until its exp + leeway. None: forever (no maximum token lifetime is configured)."""
    if claims.max_lifetime_seconds is None:
        return None
    return claims.max_lifetime_seconds + 2 * claims.leeway_seconds


def tokens_issued_until(now: float, claims: ClaimRules) -> float:
    """A revocation by authid covers every token with an `iat` up to now plus the claim leeway
    (authenticator/server/store.py, `covers`): a token minted just before it by an issuer whose
    clock runs fast carries an `iat` ahead of ours. The user's next token must be issued after it."""
    return now + claims.leeway_seconds


def _bounded_text(value) -> bool:
    return value is None or (isinstance(value, str) and 0 < len(value) <= MAX_ID)
