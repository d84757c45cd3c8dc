"""Verification keys: which key checks which token, and signing. Pure: reading key files is
authenticator/config/key_files.py, fetching a JWKS authenticator/server/jwks.py.

Each key is bound to the algorithms it may verify. Binding matters: a key ring that let any
configured algorithm use any key would let an attacker "sign" an HS256 token with a public key
as the HMAC secret (algorithm confusion).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from authenticator.core.reasons import Reason, Rejected

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_ALGORITHMS_BY_CURVE.values()) | {"EdDSA"}
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
MIN_HMAC_SECRET_BYTES = 32
GENERATED_SECRET_BYTES = 32


class KeyConfigError(ValueError):
    """A key cannot be loaded; the message says which and how to fix it."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    algorithms: frozenset[str]
    material: Any  # the HMAC secret (bytes) or a public key object
    source: str  # where it came from (an env var name or a file path), for messages; never the key
    generated: bool = False  # a secret this start created (tokens signed with any other are refused)

    @property
    def can_sign(self) -> bool:
        return bool(self.algorithms & HMAC_ALGORITHMS)

    def sign(self, claims: dict) -> str:
        """A token signed with this shared secret (its first algorithm), naming its kid."""
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(
            claims, self.material, algorithm=sorted(self.algorithms & HMAC_ALGORITHMS)[0], headers=headers
        )


class KeyRing:
    """Picks the key for a token from its header's ``kid`` and ``alg``."""

    def __init__(self, keys: list[VerificationKey], remote_algorithms: Iterable[str] = ()) -> None:
        """``keys`` are configured locally; ``remote_algorithms`` are those a JWKS URL may bring."""
        if not keys and not remote_algorithms:
            raise KeyConfigError("no verification key is configured: add one to 'keys' in the component extra")
        self.keys = tuple(keys)
        self.algorithms = frozenset(remote_algorithms).union(*(k.algorithms for k in keys))
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}
        self._default = next((k for k in keys if k.kid is None), None)
        self._remote: dict[str, VerificationKey] = {}

    def replace_remote(self, keys: Iterable[VerificationKey]) -> None:
        """Swap in the keys of a freshly fetched JWKS (keys removed at the server disappear)."""
        self._remote = {k.kid: k for k in keys if k.kid is not None and k.kid not in self._by_kid}

    def select(self, kid: object, alg: str) -> VerificationKey:
        if kid is None:
            key = self._default
            if key is None:
                raise Rejected(Reason.UNKNOWN_KEY, "the token has no kid and no default key is configured")
        elif not isinstance(kid, str):
            raise Rejected(Reason.MALFORMED_TOKEN, "the header's kid is not a string")
        else:
            key = self._by_kid.get(kid) or self._remote.get(kid)
            if key is None:
                raise Rejected(Reason.UNKNOWN_KEY, "no key is configured for the token's kid")
        if alg not in key.algorithms:
            raise Rejected(
                Reason.ALGORITHM_NOT_ALLOWED,
                f"the key the token names accepts {', '.join(sorted(key.algorithms))}, not {alg}",
            )
        return key

    def signing_key(self, kid: str | None = None) -> VerificationKey:
        """The shared secret the CLI signs demo tokens with (only HMAC keys can sign here)."""
        for key in self.keys:
            if key.can_sign and (kid is None or key.kid == kid):
                return key
        raise KeyConfigError("no HMAC secret is configured to sign with (public keys cannot sign)")


def algorithms_for(public_key: object) -> frozenset[str]:
    """The algorithms a public key can verify, from its type (and curve)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = EC_ALGORITHMS_BY_CURVE.get(public_key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def bind(public_key: object, wanted: Iterable[str] | None, where: str) -> frozenset[str]:
    """The configured algorithms for a key, checked against what the key can do."""
    possible = algorithms_for(public_key)
    if not possible:
        raise KeyConfigError(f"{where}: unsupported public key type {type(public_key).__name__}")
    if wanted is None:
        return possible
    wrong = set(wanted) - possible
    if wrong:
        raise KeyConfigError(
            f"{where}: this key cannot verify {', '.join(sorted(wrong))}; it can verify {', '.join(sorted(possible))}"
        )
    return frozenset(wanted)


def keys_from_jwks(jwks: dict, wanted: Iterable[str] | None, source: str) -> list[VerificationKey]:
    """Verification keys from a JWKS document. Private and symmetric ("oct") keys are skipped:
    a JWKS is published, so a shared secret in it would be no secret."""
    keys = []
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(entry, dict) or entry.get("kty") == "oct" or "d" in entry or entry.get("use") == "enc":
            continue
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError:
            continue
        possible = algorithms_for(jwk.key)
        declared = {entry["alg"]} if isinstance(entry.get("alg"), str) else possible
        allowed = possible & declared & (set(wanted) if wanted is not None else possible)
        if allowed:
            keys.append(VerificationKey(kid=jwk.key_id, algorithms=frozenset(allowed), material=jwk.key, source=source))
    return keys
