"""The authenticator's configuration: read once from the component's ``extra`` in
``.crossbar/config.json``, validated, and passed in. A bad value stops the start with a message
that names it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .keys import HMAC_ALGORITHMS, KeyConfigError, KeyRing, VerificationKey, load_hmac_secret
from .policy import Policy, PolicyError, load_policy

COMPONENT_CLASS = "authenticator.component.AuthenticatorComponent"
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS
DEFAULT_EXTRA: dict = {
    "keys": [{"algorithms": ["HS256"], "secret_env": "JWT_SECRET", "secret_file": "jwt-secret.key"}],
}


class ConfigError(ValueError):
    """The configuration is unusable; the message says where and how to fix it."""


@dataclass(frozen=True)
class ClaimRules:
    authid_claim: str = "sub"
    roles_claims: tuple[str, ...] = ("roles", "role")
    required: tuple[str, ...] = ("exp",)
    leeway_seconds: float = 10.0
    authid_max_length: int = 64


@dataclass(frozen=True)
class Settings:
    keys: KeyRing
    claims: ClaimRules
    policy: Policy
    max_token_bytes: int = 8192


def load_settings(extra: Mapping, cbdir: Path, *, generate_secret: bool = True) -> Settings:
    known = {"keys", "claims", "policy", "anonymous_role", "max_token_bytes", "cbdir"}
    unknown = set(extra) - known
    if unknown:
        raise ConfigError(f"unknown keys in the authenticator's extra: {', '.join(sorted(unknown))}")
    try:
        keys = _load_keys(extra.get("keys", DEFAULT_EXTRA["keys"]), cbdir, generate_secret)
        policy = load_policy(extra.get("policy"), anonymous_role=extra.get("anonymous_role", "anonymous"))
    except (KeyConfigError, PolicyError) as error:
        raise ConfigError(str(error)) from error
    max_token_bytes = extra.get("max_token_bytes", 8192)
    if not isinstance(max_token_bytes, int) or max_token_bytes < 256:
        raise ConfigError("'max_token_bytes' must be a whole number of at least 256")
    return Settings(
        keys=keys,
        claims=_load_claims(extra.get("claims", {})),
        policy=policy,
        max_token_bytes=max_token_bytes,
    )


def _load_claims(spec: object) -> ClaimRules:
    if not isinstance(spec, Mapping):
        raise ConfigError("'claims' must be an object")
    unknown = set(spec) - {"authid", "roles", "required", "leeway_seconds", "authid_max_length"}
    if unknown:
        raise ConfigError(f"unknown keys in 'claims': {', '.join(sorted(unknown))}")
    defaults = ClaimRules()
    roles = spec.get("roles", list(defaults.roles_claims))
    if isinstance(roles, str):
        roles = [roles]
    required = spec.get("required", list(defaults.required))
    leeway = spec.get("leeway_seconds", defaults.leeway_seconds)
    max_length = spec.get("authid_max_length", defaults.authid_max_length)
    authid = spec.get("authid", defaults.authid_claim)
    if not isinstance(authid, str) or not authid:
        raise ConfigError('\'claims.authid\' must name a claim, e.g. "sub" or "user.username"')
    if not _is_list_of_names(roles):
        raise ConfigError("'claims.roles' must be a claim name or a list of them")
    if not _is_list_of_names(required) and required != []:
        raise ConfigError("'claims.required' must be a list of claim names")
    if not isinstance(leeway, int | float) or not 0 <= leeway <= 300:
        raise ConfigError("'claims.leeway_seconds' must be a number from 0 to 300")
    if not isinstance(max_length, int) or not 1 <= max_length <= 1024:
        raise ConfigError("'claims.authid_max_length' must be a whole number from 1 to 1024")
    return ClaimRules(authid, tuple(roles), tuple(required), float(leeway), max_length)


def _load_keys(spec: object, cbdir: Path, generate_secret: bool) -> KeyRing:
    if not isinstance(spec, list) or not spec:
        raise ConfigError("'keys' must be a non-empty list of keys")
    keys = []
    for i, key_spec in enumerate(spec):
        where = f"keys[{i}]"
        if not isinstance(key_spec, Mapping):
            raise ConfigError(f"{where} must be an object")
        unknown = set(key_spec) - {"kid", "algorithms", "secret_env", "secret_file"}
        if unknown:
            raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        algorithms = key_spec.get("algorithms", ["HS256"])
        if not _is_list_of_names(algorithms):
            raise ConfigError(f'{where}.algorithms must be a non-empty list, e.g. ["HS256"]')
        unsupported = set(algorithms) - SUPPORTED_ALGORITHMS
        if unsupported:
            # 'none' lands here too: an unsigned token is never accepted.
            raise ConfigError(
                f"{where}: {', '.join(sorted(unsupported))} cannot verify with a shared secret; "
                f"use {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
            )
        kid = key_spec.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise ConfigError(f"{where}.kid must be a non-empty string")
        secret_file = key_spec.get("secret_file")
        path = (cbdir / secret_file) if isinstance(secret_file, str) else None
        try:
            secret, source = load_hmac_secret(key_spec.get("secret_env"), path, generate=generate_secret)
        except KeyConfigError as error:
            raise ConfigError(f"{where}: {error}") from error
        keys.append(VerificationKey(kid=kid, algorithms=frozenset(algorithms), material=secret, source=source))
    kids = [k.kid for k in keys if k.kid is not None]
    if len(kids) != len(set(kids)):
        raise ConfigError("two keys share a kid; every kid must be unique")
    if sum(1 for k in keys if k.kid is None) > 1:
        raise ConfigError("only one key may go without a kid (it checks tokens that name no kid)")
    return KeyRing(keys)


def _is_list_of_names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def component_extra(config_file: Path) -> dict:
    """The authenticator component's ``extra`` from a Crossbar node config (for the CLI)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{config_file} does not exist; pass --cbdir pointing at your .crossbar folder") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{config_file} is not valid JSON: {error}") from error
    for worker in config.get("workers", []):
        for component in worker.get("components", []):
            if component.get("classname") == COMPONENT_CLASS:
                return dict(component.get("extra", {}))
    raise ConfigError(f"{config_file} has no component with classname {COMPONENT_CLASS}")
