"""Every way a login can be refused: one table, one stable WAMP error URI per reason.

A client sees ``authenticator.error.<code>`` as the ABORT reason and :meth:`Rejected.message`
as its message; the router log sees the same code and detail. Neither may ever contain the
token or a secret: a ``detail`` names claims, algorithms and limits, never their secret values.
"""

from __future__ import annotations

from enum import Enum

from authenticator.contract import ERROR_URI_PREFIX


class Reason(Enum):
    """code, what went wrong, what the client should do."""

    MISSING_TOKEN = (
        "missing_token",
        "No token was presented",
        "Send the JWT as the WAMP ticket (authmethods ['ticket'], onchallenge returns the token).",
    )
    MALFORMED_TOKEN = (
        "malformed_token",
        "The ticket is not a well-formed JWT",
        "Send the compact token exactly as your issuer signed it (header.payload.signature).",
    )
    ALGORITHM_NOT_ALLOWED = (
        "algorithm_not_allowed",
        "The token's signing algorithm is not accepted here",
        "Sign with one of the algorithms this router is configured for.",
    )
    UNKNOWN_KEY = (
        "unknown_key",
        "The token names a key (kid) this router does not know",
        "Sign with a current key, or add the key to the router's configuration.",
    )
    INVALID_SIGNATURE = (
        "invalid_signature",
        "The token's signature does not match the router's key",
        "Make sure the issuer and the router share the same key, then mint a new token.",
    )
    EXPIRED = (
        "expired",
        "The token has expired",
        "Fetch a fresh token from your application and reconnect.",
    )
    NOT_YET_VALID = (
        "not_yet_valid",
        "The token is not valid yet",
        "Check the issuer's clock, or wait until the token's nbf/iat time.",
    )
    MISSING_CLAIM = (
        "missing_claim",
        "The token lacks a required claim",
        "Mint the token with every claim the router requires.",
    )
    INVALID_CLAIM = (
        "invalid_claim",
        "A claim in the token has an unusable value",
        "Fix the claim in your issuer and mint a new token.",
    )
    INVALID_ISSUER = (
        "invalid_issuer",
        "The token's issuer (iss) is not trusted here",
        "Use a token from an issuer the router is configured to trust.",
    )
    INVALID_AUDIENCE = (
        "invalid_audience",
        "The token is meant for another audience (aud)",
        "Mint the token with the audience this router expects.",
    )
    WRONG_REALM = (
        "wrong_realm",
        "The token was issued for another realm",
        "Use a token minted for the one realm you join or publish to (its aud, or the router's realm claim, names it).",
    )
    LIFETIME_TOO_LONG = (
        "lifetime_too_long",
        "The token lives longer than this router allows",
        "Mint shorter-lived tokens (exp - iat within the configured maximum).",
    )
    UNKNOWN_ROLE = (
        "unknown_role",
        "None of the token's roles is defined on this realm",
        "Mint the token with a role the router's policy defines.",
    )
    GRANT_NOT_ALLOWED = (
        "grant_not_allowed",
        "The token grants what this router's policy does not let a token grant",
        "Mint the token with grants (its caps claim) inside the policy's grantable rules for its roles.",
    )
    REPLAYED = (
        "replayed",
        "This single-use token has already been used",
        "Fetch a fresh token for every connection.",
    )
    REVOKED = (
        "revoked",
        "Access for this token or user has been revoked",
        "Sign in again; if it persists, ask an administrator.",
    )
    ORIGIN_NOT_ALLOWED = (
        "origin_not_allowed",
        "The token cookie was sent from a page whose origin is not allowed",
        "Open the connection from an allowed origin, or send the token as the WAMP ticket.",
    )
    REFRESH_REFUSED = (
        "refresh_refused",
        "The new token cannot extend this session",
        "Refresh with a token for the same user and the same roles; to change roles, reconnect with the new token.",
    )
    STORE_UNAVAILABLE = (
        "store_unavailable",
        "The router cannot check replay and revocation state right now",
        "Retry shortly; the operator should check the token store.",
    )
    INTERNAL_ERROR = (
        "internal_error",
        "The router failed while checking the token",
        "Retry; if it persists, the operator should read the router log.",
    )

    def __init__(self, code: str, what: str, todo: str) -> None:
        self.code = code
        self.what = what
        self.todo = todo

    @property
    def uri(self) -> str:
        return ERROR_URI_PREFIX + self.code


class Rejected(Exception):
    """A refusal with its reason. ``detail`` is shown to the client and logged: keep it secret-free."""

    def __init__(self, reason: Reason, detail: str = "", *, authid: str | None = None, jti: str | None = None):
        super().__init__(reason.code, detail)
        self.reason = reason
        self.detail = detail
        self.authid = authid
        self.jti = jti

    @property
    def message(self) -> str:
        what = f"{self.reason.what}: {self.detail}" if self.detail else self.reason.what
        return f"{what}. {self.reason.todo}"

    def __str__(self) -> str:
        return f"{self.reason.code}: {self.message}"


def as_rejection(error: BaseException) -> Rejected:
    """The refusal a failure becomes: a Rejected as it is; anything else is an internal error,
    known by its type only (a message or traceback could quote the token)."""
    return error if isinstance(error, Rejected) else Rejected(Reason.INTERNAL_ERROR, type(error).__name__)
