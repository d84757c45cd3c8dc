"""Token verification: token -> Identity, or Rejected with its reason. Pure: no Twisted, no I/O.

The checks run in one order, top to bottom in :meth:`TokenVerifier.verify` (docs/tokens.md lists
it): presence, size, header, algorithm allow-list, key, signature, exp/nbf/iat, required claims,
iss, aud, lifetime, authid, roles, grants. The clock is injected so expiry is tested without sleeping.
Replay and revocation need the store, so the component checks them after this, last: a token
reaches the store only once everything that costs no I/O has passed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from authenticator.core.grants import read_grants
from authenticator.core.json_guard import nesting_exceeds
from authenticator.core.policy import Grant, authid_problem
from authenticator.core.reasons import Reason, Rejected
from authenticator.core.settings import Settings

_TIME_CLAIMS = ("exp", "nbf", "iat")
_PREPARED_HMAC_KEYS = 64  # the configured secrets; more (never expected) are prepared per token


class _PreparedHmac(HMACAlgorithm):
    """PyJWT prepares the key for every token it verifies; for HMAC that checks the secret is not a
    PEM, SSH or JWK key (a json.loads with a new decoder each time: ~2.5 % of a login's CPU,
    profiled). The answer depends on the secret's bytes alone, so it is kept per secret: the same
    check, the same refusal (a failed preparation is not kept), once."""

    def __init__(self, hash_alg) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[bytes | str, bytes] = {}

    def prepare_key(self, key):
        prepared = self._prepared.get(key) if isinstance(key, (bytes, str)) else None
        if prepared is None:
            prepared = super().prepare_key(key)
            if isinstance(key, (bytes, str)) and len(self._prepared) < _PREPARED_HMAC_KEYS:
                self._prepared[key] = prepared
        return prepared


_JWS = jwt.PyJWS()
for _name, _hash in (("HS256", HMACAlgorithm.SHA256), ("HS384", HMACAlgorithm.SHA384),
                     ("HS512", HMACAlgorithm.SHA512)):  # fmt: skip
    _JWS.unregister_algorithm(_name)
    _JWS.register_algorithm(_name, _PreparedHmac(_hash))


class _NotStrictJson(ValueError):
    """Our own reason a segment is refused; its message quotes nothing from the token."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise _NotStrictJson("duplicate name")
        seen[name] = value
    return seen


def _no_constants(name: str):
    raise _NotStrictJson("NaN and Infinity are not JSON")


MAX_JSON_DEPTH = 16  # claims are flat in practice; deep nesting only serves to exhaust a parser


def _strict_json(data: bytes) -> Any:
    """JSON as RFC 8259 has it: no duplicate names, no NaN/Infinity; nesting deeper than
    MAX_JSON_DEPTH refused (the same answer whatever the process's recursion limit is)."""
    try:
        # UTF-8 only (RFC 7519): json.loads of bytes would also read UTF-16 and UTF-32, whose bytes
        # the nesting scan (and a reader's eye) cannot follow.
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _NotStrictJson("not UTF-8") from None
    if nesting_exceeds(data, MAX_JSON_DEPTH):
        raise _NotStrictJson("nested too deeply")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise _NotStrictJson("nested too deeply") from None


def _why(error: Exception) -> str:
    # Our own messages only: a parser's message could quote the token.
    if isinstance(error, _NotStrictJson):
        return str(error)
    return "not JSON" if isinstance(error, json.JSONDecodeError) else "malformed"


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for. ``role`` is the one Crossbar session role."""

    authid: str
    role: str
    roles: tuple[str, ...]
    expires_at: int | None
    issued_at: int | None
    jti: str | None
    claims: Mapping[str, Any] = field(repr=False)
    # What the token grants beyond its roles' rules (the caps claim, admitted by the policy's
    # grantable rules: authenticator/core/grants.py); the session keeps them for its life.
    grants: tuple[Grant, ...] = ()

    def authextra(self) -> dict:
        """What the client sees in WELCOME.authextra."""
        return {"roles": list(self.roles), "exp": self.expires_at}


# An issuer puts the same header on every token, and parsing it is a third of PyJWT's work. Only
# headers of tokens that verified are remembered, so refused tokens cannot fill (or poison) it.
HEADER_CACHE_SIZE = 64
# Tokens that verified, by their exact text: a backend sends the same token with every HTTP
# publication, a client reconnects with its token, and the signature is most of the verification.
# Verifying is a function of the token, the settings (fixed), the key and the clock: a remembered
# token is used only while the key that verified it is still the one its header selects (a
# rotated or removed key forgets it), and its times are checked again at every use. Revocation
# and replay are not verification: the store is asked every time (admission.py). Single-use
# tokens are never remembered (they must not come twice). Oldest first out; at most
# TOKEN_CACHE_SIZE * max_token_bytes of memory (2 MiB at the defaults).
TOKEN_CACHE_SIZE = 256


class TokenVerifier:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._verified_headers: dict[str, dict] = {}
        self._verified_tokens: dict[str, tuple[object, dict, Identity]] = {}

    def verify(self, token: object) -> Identity:
        remembered = self._verified_tokens.get(token) if isinstance(token, str) else None
        if remembered is not None:
            key, header, identity = remembered
            try:
                still = self.settings.keys.select(header.get("kid"), header["alg"]) is key
            except Rejected:
                still = False
            if still:
                self._check_times(identity.claims, identity.jti)
                return identity
            del self._verified_tokens[token]
        return self._verify(token)

    def _verify(self, token: object) -> Identity:
        claims_rules = self.settings.claims
        if token is None or token == "":
            raise Rejected(Reason.MISSING_TOKEN)
        if not isinstance(token, str):
            raise Rejected(Reason.MALFORMED_TOKEN, "the ticket must be a string")
        # Bytes, not characters: a character can take up to four bytes in UTF-8. Counting the
        # characters first spares encoding a huge ticket that is over the limit either way.
        limit = self.settings.max_token_bytes
        if len(token) > limit or len(token.encode("utf-8", "surrogatepass")) > limit:
            raise Rejected(Reason.MALFORMED_TOKEN, f"it is longer than {self.settings.max_token_bytes} bytes")
        if token.count(".") != 2:
            raise Rejected(Reason.MALFORMED_TOKEN, "a JWT has exactly three dot-separated parts")

        header_segment = token.partition(".")[0]
        header = self._verified_headers.get(header_segment) or self._read_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.keys.algorithms:
            # 'none', any spelling of it, and every algorithm no configured key is bound to.
            shown = alg if isinstance(alg, str) and len(alg) <= 16 and alg.isprintable() else "?"
            allowed = ", ".join(sorted(self.settings.keys.algorithms))
            raise Rejected(Reason.ALGORITHM_NOT_ALLOWED, f"'{shown}' (allowed: {allowed})")
        key = self.settings.keys.select(header.get("kid"), alg)

        claims = self._check_signature(token, key.material, alg)
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not jti):
            # A jti that is not a string could slip past single-use checks keyed by string.
            raise Rejected(Reason.INVALID_CLAIM, "'jti' must be a non-empty string")
        self._check_times(claims, jti)
        for name in claims_rules.required:
            if _claim(claims, name) is None:
                raise Rejected(Reason.MISSING_CLAIM, f"'{name}'", jti=jti)

        self._check_issuer_and_audience(claims, jti)
        self._check_lifetime(claims, jti)

        authid = _claim(claims, claims_rules.authid_claim)
        if authid is None:
            raise Rejected(Reason.MISSING_CLAIM, f"'{claims_rules.authid_claim}' (the user id)", jti=jti)
        problem = authid_problem(authid, claims_rules.authid_max_length)
        if problem:
            raise Rejected(Reason.INVALID_CLAIM, problem, jti=jti)

        token_roles = self._read_roles(claims, authid, jti)
        role, known = self.settings.policy.session_role(token_roles)
        if role is None:
            raise Rejected(Reason.UNKNOWN_ROLE, self._unknown_roles(token_roles), authid=authid, jti=jti)
        grants = read_grants(
            _claim(claims, claims_rules.caps_claim), claim=claims_rules.caps_claim, policy=self.settings.policy,
            roles=known, authid=authid, max_uri_length=self.settings.limits.max_uri_length, jti=jti,
        )  # fmt: skip
        if len(self._verified_headers) < HEADER_CACHE_SIZE:
            self._verified_headers[header_segment] = header
        identity = Identity(
            authid=authid,
            role=role,
            roles=known,
            expires_at=claims.get("exp"),
            issued_at=claims.get("iat"),
            jti=jti,
            claims=MappingProxyType(claims),  # shared by every use of a remembered token: read-only
            grants=grants,
        )
        if not self.settings.single_use:
            if len(self._verified_tokens) >= TOKEN_CACHE_SIZE:
                del self._verified_tokens[next(iter(self._verified_tokens))]
            self._verified_tokens[token] = (key, header, identity)
        return identity

    # -- steps ---------------------------------------------------------------------------------

    @staticmethod
    def _read_header(token: str) -> dict:
        try:
            jwt.get_unverified_header(token)  # PyJWT's own checks of the compact form first
            header = _strict_json(jwt.utils.base64url_decode(token.partition(".")[0]))
        except (jwt.InvalidTokenError, ValueError) as error:  # DecodeError, and a kid that is not a string
            raise Rejected(Reason.MALFORMED_TOKEN, f"its header is not a valid JSON object ({_why(error)})") from error
        if not isinstance(header, dict):
            raise Rejected(Reason.MALFORMED_TOKEN, "its header is not a JSON object")
        if "enc" in header or "zip" in header:
            # JWE parameters: a library that decides JWS-or-JWE by them would read it differently.
            raise Rejected(Reason.MALFORMED_TOKEN, "its header has JWE parameters (enc, zip); send a signed JWT")
        return header

    @staticmethod
    def _check_signature(token: str, key: bytes, alg: str) -> dict:
        """PyJWT checks the signature; the claims are then parsed strictly (RFC 7519 section 4:
        duplicate claim names are refused, not resolved one way or another)."""
        try:
            verified = _JWS.decode_complete(token, key, algorithms=[alg])
        except jwt.InvalidSignatureError as error:
            raise Rejected(Reason.INVALID_SIGNATURE) from error
        except jwt.InvalidAlgorithmError as error:
            raise Rejected(Reason.ALGORITHM_NOT_ALLOWED, f"'{alg}' cannot be used with this key") from error
        except jwt.DecodeError as error:
            raise Rejected(Reason.MALFORMED_TOKEN, "its payload or signature cannot be decoded") from error
        try:
            claims = _strict_json(verified["payload"])
        except ValueError as error:
            raise Rejected(Reason.MALFORMED_TOKEN, f"its payload is not valid JSON ({_why(error)})") from error
        if not isinstance(claims, dict):
            raise Rejected(Reason.MALFORMED_TOKEN, "its payload is not a JSON object")
        return claims

    def _check_times(self, claims: Mapping[str, Any], jti: str | None) -> None:
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            ):
                # An infinite exp (1e400 parses as inf) would be a token that never expires.
                raise Rejected(Reason.INVALID_CLAIM, f"'{name}' must be a number (seconds since the epoch)", jti=jti)
        # A null time claim counts as absent ("exp" is then a missing required claim).
        now, leeway = self.clock(), self.settings.claims.leeway_seconds
        exp, nbf, iat = (claims.get(name) for name in _TIME_CLAIMS)
        if exp is not None and now >= exp + leeway:
            raise Rejected(Reason.EXPIRED, f"{int(now - exp)} s ago", jti=jti)
        if nbf is not None and now < nbf - leeway:
            raise Rejected(Reason.NOT_YET_VALID, f"nbf is {int(nbf - now)} s ahead", jti=jti)
        if iat is not None and now < iat - leeway:
            raise Rejected(Reason.NOT_YET_VALID, f"iat is {int(iat - now)} s ahead", jti=jti)

    def _check_issuer_and_audience(self, claims: Mapping[str, Any], jti: str | None) -> None:
        rules = self.settings.claims
        if rules.issuers:
            if "iss" not in claims:
                raise Rejected(Reason.MISSING_CLAIM, "'iss'", jti=jti)
            if claims["iss"] not in rules.issuers:
                raise Rejected(Reason.INVALID_ISSUER, f"trusted issuers: {', '.join(rules.issuers)}", jti=jti)
        aud = claims.get("aud")
        if rules.audiences and aud is None:
            raise Rejected(Reason.MISSING_CLAIM, "'aud'", jti=jti)
        named = [aud] if isinstance(aud, str) else aud
        if aud is not None and (not isinstance(named, list) or not all(isinstance(a, str) for a in named)):
            raise Rejected(Reason.INVALID_CLAIM, "'aud' must be a string or a list of strings", jti=jti)
        self._check_realm(claims, named, jti)
        if aud is not None:
            # Bound by aud without audiences configured: the realm is the audience (checked above).
            accepted = (rules.realm,) if rules.realm_claim == "aud" and not rules.audiences else rules.audiences
            if not set(named) & set(accepted):
                # RFC 7519 4.1.3: a recipient not named in a present 'aud' must refuse the token.
                expected = ", ".join(rules.audiences) or "none configured (set claims.audience)"
                raise Rejected(Reason.INVALID_AUDIENCE, f"this router accepts: {expected}", jti=jti)

    def _check_realm(self, claims: Mapping[str, Any], audiences: list[str] | None, jti: str | None) -> None:
        """A token is for one realm (claims.realm_claim): one key may serve several realms."""
        rules = self.settings.claims
        if rules.realm_claim is None:
            return
        if rules.realm_claim == "aud":
            if audiences is None:
                raise Rejected(
                    Reason.MISSING_CLAIM, f"'aud' (the realm the token is for, here {rules.realm!r})", jti=jti
                )
            if rules.realm not in audiences:
                raise Rejected(Reason.WRONG_REALM, f"its aud names {_shown(audiences)}; this is realm {rules.realm!r}",
                               jti=jti)  # fmt: skip
            others = [name for name in rules.node_realms if name in audiences and name != rules.realm]
            if others:  # a token is for one realm: one naming two would open both (and be used once in each)
                named = _shown([rules.realm, *others])
                detail = f"its aud names this router's realms {named}; a token is for one realm"
                raise Rejected(Reason.WRONG_REALM, detail, jti=jti)
            return
        value = _claim(claims, rules.realm_claim)
        if value is None:
            raise Rejected(Reason.MISSING_CLAIM, f"'{rules.realm_claim}' (the realm the token is for, here "
                           f"{rules.realm!r})", jti=jti)  # fmt: skip
        if value != rules.realm:
            shown = _shown([value]) if isinstance(value, str) else f"a {type(value).__name__}"
            raise Rejected(Reason.WRONG_REALM, f"its '{rules.realm_claim}' is {shown}; this is realm {rules.realm!r}",
                           jti=jti)  # fmt: skip

    def _check_lifetime(self, claims: Mapping[str, Any], jti: str | None) -> None:
        limit = self.settings.claims.max_lifetime_seconds
        if limit is None:
            return
        for name in ("iat", "exp"):
            if claims.get(name) is None:
                raise Rejected(Reason.MISSING_CLAIM, f"'{name}' (needed to check the token's lifetime)", jti=jti)
        if claims["exp"] - claims["iat"] > limit:
            raise Rejected(Reason.LIFETIME_TOO_LONG, f"{int(claims['exp'] - claims['iat'])} s > {limit} s", jti=jti)

    def _unknown_roles(self, token_roles: tuple[str, ...]) -> str:
        """Names the token's roles (at most 5, each cut to 32 characters: they are the client's
        text, shown to it and logged) and the roles the policy defines."""
        shown = ", ".join(repr(r[:32]) for r in token_roles[:5]) + (", ..." if len(token_roles) > 5 else "")
        defined = ", ".join(self.settings.policy.roles)
        return f"the token names {shown or 'no role'}; this realm defines {defined}"

    def _read_roles(self, claims: Mapping[str, Any], authid: str, jti: str | None) -> tuple[str, ...]:
        for name in self.settings.claims.roles_claims:
            value = _claim(claims, name)
            if value is None:
                continue
            if isinstance(value, str):
                return (value,)
            if isinstance(value, list) and all(isinstance(r, str) for r in value):
                return tuple(value)
            raise Rejected(
                Reason.INVALID_CLAIM,
                f"'{name}' must be a role name or a list of them",
                authid=authid,
                jti=jti,
            )
        raise Rejected(
            Reason.MISSING_CLAIM,
            f"'{' or '.join(self.settings.claims.roles_claims)}' (the user's roles)",
            authid=authid,
            jti=jti,
        )


def claimed_realms(token: object, claim: str, max_bytes: int) -> tuple[str, ...]:
    """The realms a token names in `claim` ("aud", or the operator's claim), read WITHOUT checking
    its signature: only to choose which realm's keys and policy verify it (HTTP publishing on a node
    with several realms); that realm's verifier then checks the same binding on the signed claims.
    Nothing for a token that is not a bounded, well-formed JWT with a JSON object payload."""
    if not isinstance(token, str) or len(token) > max_bytes or token.count(".") != 2:
        return ()
    try:
        claims = _strict_json(jwt.utils.base64url_decode(token.split(".")[1]))
    except (ValueError, TypeError, jwt.DecodeError):
        return ()
    value = _claim(claims, claim) if isinstance(claims, dict) else None
    named = [value] if isinstance(value, str) else value
    if not isinstance(named, list):
        return ()
    return tuple(name for name in named if isinstance(name, str))


def _shown(names: list[str]) -> str:
    """Names from the token, for the client and the log: at most 3, each cut to 32 printable characters."""
    shown = ", ".join(repr("".join(c if c.isprintable() else "?" for c in n[:32])) for n in names[:3])
    return (shown or "nothing") + (", ..." if len(names) > 3 else "")


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects ('user.username')."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
