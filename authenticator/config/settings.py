"""The authenticator's configuration: read once from the component's ``extra`` in
``.crossbar/config.json``, validated, and passed in. A bad value stops the start with a message
that names it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from authenticator.config.key_files import load_hmac_secret, load_public_key_file
from authenticator.core.keys import (
    HMAC_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    KeyConfigError,
    KeyRing,
    VerificationKey,
    keys_from_jwks,
)
from authenticator.core.policy import PolicyError, load_policy
from authenticator.core.settings import (  # noqa: F401 - read with the settings they load
    ClaimRules,
    ConfigError,
    CookieRule,
    HistorySettings,
    IssuerSettings,
    JwksUrl,
    Limits,
    PresenceSettings,
    PublishSettings,
    Settings,
    StoreSpec,
)
from authenticator.core.unknown_keys import unknown_keys

DEFAULT_EXTRA: dict = {
    "keys": [{"algorithms": ["HS256"], "secret_env": "JWT_SECRET", "secret_file": "jwt-secret.key"}],
}


def load_settings(
    extra: Mapping, cbdir: Path, *, generate_secret: bool | None = True, realm: str | None = None,
    node_realms: tuple[str, ...] = (),
) -> Settings:  # fmt: skip
    """generate_secret: create the development secret file if there is no secret (a start);
    False: refuse instead; None: check only, a secret file that is not there yet is fine.
    realm: the realm this component serves; node_realms: every realm of the node that has an
    authenticator component (several: a token must name its realm, claims.realm_claim)."""
    known = (
        "keys", "claims", "policy", "anonymous_role", "max_token_bytes", "single_use", "store", "session",
        "bearer_header", "cookie", "issuer", "limits", "cbdir", "generate_secret", "trusted_proxies",
        "publish", "presence", "history",
    )  # fmt: skip
    _refuse_unknown("the authenticator's extra", extra, known)
    may_generate = extra.get("generate_secret", True)
    if not isinstance(may_generate, bool):
        raise ConfigError("'generate_secret' must be true or false")
    if not may_generate and generate_secret:
        # Production: a start without an explicit key source stops; it never makes up a secret.
        generate_secret = False
    trusted_proxies = _trusted_proxies(extra.get("trusted_proxies", []))
    try:
        keys, jwks_urls = _load_keys(extra.get("keys", DEFAULT_EXTRA["keys"]), cbdir, generate_secret)
        anonymous_role = extra.get("anonymous_role", "anonymous")
        if anonymous_role is not None and not isinstance(anonymous_role, str):
            raise ConfigError("'anonymous_role' must be a role name, or null for no anonymous access")
        policy = load_policy(extra.get("policy"), anonymous_role=anonymous_role)
    except (KeyConfigError, PolicyError) as error:
        raise ConfigError(str(error)) from error
    max_token_bytes = extra.get("max_token_bytes", 8192)
    if not isinstance(max_token_bytes, int) or max_token_bytes < 256:
        raise ConfigError("'max_token_bytes' must be a whole number of at least 256")
    single_use = extra.get("single_use", False)
    if not isinstance(single_use, bool):
        raise ConfigError("'single_use' must be true or false")
    claims = _load_claims(extra.get("claims", {}), realm, node_realms)
    if "issuer" in extra:
        load_issuer_settings(extra["issuer"])  # used by the demo issuer; checked here, at start
    if single_use and "jti" not in claims.required:
        claims = replace(claims, required=(*claims.required, "jti"))
    session = extra.get("session", {})
    if not isinstance(session, Mapping):
        raise ConfigError("'session' must be an object")
    _refuse_unknown("'session'", session, ("expiry_grace_seconds", "join_timeout_seconds", "behind_proxies",
                                           "goodbye_on_stop"))  # fmt: skip
    grace = session.get("expiry_grace_seconds", 5)
    if not isinstance(grace, int | float) or not 0 <= grace <= 3600:
        raise ConfigError("'session.expiry_grace_seconds' must be a number from 0 to 3600")
    join_timeout = session.get("join_timeout_seconds", 30)
    if not isinstance(join_timeout, int | float) or not 1 <= join_timeout <= 600:
        raise ConfigError("'session.join_timeout_seconds' must be a number from 1 to 600")
    behind_proxies = session.get("behind_proxies", False)
    if not isinstance(behind_proxies, bool):
        raise ConfigError("'session.behind_proxies' must be true or false")
    goodbye_on_stop = session.get("goodbye_on_stop", False)
    if not isinstance(goodbye_on_stop, bool):
        raise ConfigError("'session.goodbye_on_stop' must be true or false")
    bearer = extra.get("bearer_header", True)
    if not isinstance(bearer, bool):
        raise ConfigError("'bearer_header' must be true or false")
    return Settings(
        keys=keys,
        claims=claims,
        policy=policy,
        max_token_bytes=max_token_bytes,
        jwks_urls=jwks_urls,
        single_use=single_use,
        store=_load_store(extra.get("store", {}), cbdir),
        expiry_grace_seconds=float(grace),
        join_timeout_seconds=float(join_timeout),
        behind_proxies=behind_proxies,
        goodbye_on_stop=goodbye_on_stop,
        bearer_header=bearer,
        cookie=_load_cookie(extra.get("cookie")),
        limits=_load_limits(extra.get("limits", {})),
        trusted_proxies=trusted_proxies,
        publish=_load_publish(extra.get("publish", {})),
        presence=_load_presence(extra.get("presence", {})),
        history=_load_history(extra.get("history", {})),
    )


_RANGES = {  # name: (lowest, highest) for the whole-number settings
    "token_ttl_seconds": (1, 86_400),
    "max_body_bytes": (256, 1_048_576),
    "login_attempts_per_minute": (1, 10_000),
    "login_tracked_addresses": (1, 10_000_000),
    "share_min_seconds": (1, 86_400),
    "share_max_seconds": (1, 86_400),
    "max_shares": (1, 100_000),
}


def load_issuer_settings(spec: object) -> IssuerSettings:
    if not isinstance(spec, Mapping):
        raise ConfigError("'issuer' must be an object")
    _refuse_unknown("'issuer'", spec, ("users_file", *_RANGES))
    users_file = spec.get("users_file", IssuerSettings.users_file)
    if not isinstance(users_file, str) or not users_file:
        raise ConfigError("'issuer.users_file' must be a file name in the node directory")
    numbers = {name: spec.get(name, getattr(IssuerSettings, name)) for name in _RANGES}
    for name, value in numbers.items():
        low, high = _RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"'issuer.{name}' must be a whole number from {low} to {high}")
    if numbers["share_min_seconds"] > numbers["share_max_seconds"]:
        raise ConfigError("'issuer.share_min_seconds' must not be more than 'issuer.share_max_seconds'")
    return IssuerSettings(users_file=users_file, **numbers)


def _refuse_unknown(where: str, spec: Mapping, known) -> None:
    problem = unknown_keys(where, spec, known)
    if problem:
        raise ConfigError(problem)


def _load_limits(spec: object) -> Limits:
    defaults = Limits()
    bounds = {
        "max_uri_length": (16, 65536), "authorization_cache_entries": (0, 1_000_000), "hello_timeout_seconds": (1, 300),
    }  # fmt: skip
    if not isinstance(spec, Mapping):
        raise ConfigError(f"'limits' must be an object; it takes {', '.join(bounds)}")
    _refuse_unknown("'limits'", spec, bounds)
    values = {}
    for name, (low, high) in bounds.items():
        value = spec.get(name, getattr(defaults, name))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"'limits.{name}' must be a whole number from {low} to {high}")
        values[name] = value
    return Limits(**values)


def _load_publish(spec: object) -> PublishSettings:
    defaults = PublishSettings()
    bounds = {"idempotency_window_seconds": (60, 604_800), "idempotency_max_keys": (1, 10_000_000)}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"'publish' must be an object; it takes {', '.join(bounds)}")
    _refuse_unknown("'publish'", spec, bounds)
    values = {}
    for name, (low, high) in bounds.items():
        value = spec.get(name, getattr(defaults, name))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"'publish.{name}' must be a whole number from {low:,} to {high:,}")
        values[name] = value
    return PublishSettings(**values)


HISTORY_BOUNDS = {  # key: (least, most)
    "publisher_bytes_per_minute": (1024, 2**40),
    "memory_max_bytes": (2**20, 2**40),
    "memory_max_topics": (1, 10_000_000),
}


def _load_history(spec: object) -> HistorySettings:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"'history' must be an object; it takes {', '.join(HISTORY_BOUNDS)}")
    _refuse_unknown("'history'", spec, tuple(HISTORY_BOUNDS))
    values = {}
    for key, (least, most) in HISTORY_BOUNDS.items():
        value = spec.get(key, getattr(HistorySettings, key))
        if type(value) is not int or not least <= value <= most:
            raise ConfigError(f"'history.{key}' must be a whole number from {least} to {most}")
        values[key] = value
    return HistorySettings(**values)


def _load_presence(spec: object) -> PresenceSettings:
    if not isinstance(spec, Mapping):
        raise ConfigError("'presence' must be an object; it takes ttl_seconds")
    _refuse_unknown("'presence'", spec, ("ttl_seconds",))
    ttl = spec.get("ttl_seconds", PresenceSettings.ttl_seconds)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 3 <= ttl <= 3600:
        raise ConfigError("'presence.ttl_seconds' must be a whole number from 3 to 3600")
    return PresenceSettings(ttl_seconds=ttl)


def _load_store(spec: object, cbdir: Path) -> StoreSpec:
    if not isinstance(spec, Mapping):
        raise ConfigError("'store' takes 'sqlite' (a file in the node directory) or 'redis_url', and 'timeout_seconds'")
    _refuse_unknown("'store'", spec, ("sqlite", "redis_url", "timeout_seconds"))
    timeout = spec.get("timeout_seconds", 1.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 10:
        raise ConfigError("'store.timeout_seconds' must be a number of seconds from 0.1 to 10")
    if spec.get("redis_url"):
        url = spec["redis_url"]
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("'store.redis_url' must be a redis://, rediss:// or unix:// URL")
        return StoreSpec(redis_url=url, timeout_seconds=float(timeout))
    name = spec.get("sqlite", "tokens.sqlite")
    if not isinstance(name, str) or not name:
        raise ConfigError("'store.sqlite' must be a file name")
    return StoreSpec(sqlite_path=cbdir / name, timeout_seconds=float(timeout))


def _load_cookie(spec: object) -> CookieRule | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError("'cookie' takes 'name' and 'allowed_origins'")
    _refuse_unknown("'cookie'", spec, ("name", "allowed_origins"))
    name, origins = spec.get("name", "cbjwt"), spec.get("allowed_origins")
    if not isinstance(name, str) or not name:
        raise ConfigError("'cookie.name' must be a cookie name")
    if not _is_list_of_names(origins):
        # Without an Origin allow-list any site could open a socket with the user's cookie.
        raise ConfigError("'cookie.allowed_origins' must list the origins allowed to use the cookie")
    return CookieRule(name=name, allowed_origins=tuple(o.rstrip("/") for o in origins))


def _load_claims(spec: object, realm: str | None = None, node_realms: tuple[str, ...] = ()) -> ClaimRules:
    if not isinstance(spec, Mapping):
        raise ConfigError("'claims' must be an object")
    known = (
        "authid", "roles", "required", "leeway_seconds", "authid_max_length", "issuers", "audience", "caps",
        "max_lifetime_seconds", "realm_claim",
    )  # fmt: skip
    _refuse_unknown("'claims'", spec, known)
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
    issuers = spec.get("issuers", [])
    audience = spec.get("audience", [])
    audience = [audience] if isinstance(audience, str) else (audience or [])
    lifetime = spec.get("max_lifetime_seconds")
    if issuers != [] and not _is_list_of_names(issuers):
        raise ConfigError("'claims.issuers' must be a list of trusted iss values")
    if audience != [] and not _is_list_of_names(audience):
        raise ConfigError("'claims.audience' must be an audience or a list of them")
    if lifetime is not None and (not isinstance(lifetime, int) or lifetime < 1):
        raise ConfigError("'claims.max_lifetime_seconds' must be a whole number of seconds, or null")
    return ClaimRules(
        authid, tuple(roles), tuple(required), float(leeway), max_length, tuple(issuers), tuple(audience), lifetime,
        realm=realm, realm_claim=_realm_claim(spec, realm, node_realms), node_realms=tuple(dict.fromkeys(node_realms)),
        caps_claim=_caps_claim(spec),
    )  # fmt: skip


def _realm_claim(spec: Mapping, realm: str | None, node_realms: tuple[str, ...]) -> str | None:
    """The claim that binds a token to its realm: "aud" by default on a node with several realms
    (one key may serve two realms: without a binding, a token of one would open the other)."""
    several = len(set(node_realms)) > 1
    claim = spec.get("realm_claim", "aud" if several else None)
    if claim is None:
        if several:
            raise ConfigError(
                "'claims.realm_claim' cannot be null: this node serves the realms "
                f"{', '.join(sorted(set(node_realms)))}, so a token must name the one it is for; "
                'use "aud" (the default) or the name of a claim'
            )  # fmt: skip
        return None
    if not isinstance(claim, str) or not claim or claim in ("sub", "exp", "nbf", "iat", "iss", "jti"):
        raise ConfigError('\'claims.realm_claim\' must be "aud" or the name of a claim that carries the realm, '
                          'e.g. "realm"')  # fmt: skip
    if realm is None and several:
        raise ConfigError("'claims.realm_claim' needs the component's realm")
    return claim


def _caps_claim(spec: Mapping) -> str:
    """The claim a token lists its grants in (authenticator/core/grants.py)."""
    claim = spec.get("caps", ClaimRules().caps_claim)
    if not isinstance(claim, str) or not claim or claim in ("sub", "exp", "nbf", "iat", "iss", "aud", "jti"):
        raise ConfigError("'claims.caps' must name the claim that lists a token's grants, e.g. \"caps\"")
    return claim


def _trusted_proxies(value: object) -> frozenset[str]:
    import ipaddress

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("'trusted_proxies' must be a list of IP addresses, such as [\"127.0.0.1\"]")
    try:
        return frozenset(str(ipaddress.ip_address(v)) for v in value)
    except ValueError as error:
        raise ConfigError(f"'trusted_proxies': {error}") from None


def _load_keys(spec: object, cbdir: Path, generate_secret: bool | None) -> tuple[KeyRing, tuple[JwksUrl, ...]]:
    if not isinstance(spec, list) or not spec:
        raise ConfigError("'keys' must be a non-empty list of keys")
    keys: list[VerificationKey] = []
    jwks_urls: list[JwksUrl] = []
    for i, key_spec in enumerate(spec):
        where = f"keys[{i}]"
        if not isinstance(key_spec, Mapping):
            raise ConfigError(f"{where} must be an object")
        known = (
            "kid", "algorithms", "secret_env", "secret_file", "public_key_file", "jwks_file", "jwks_url",
            "refresh_seconds", "min_refetch_seconds", "timeout_seconds",
        )  # fmt: skip
        _refuse_unknown(where, key_spec, known)
        algorithms = key_spec.get("algorithms")
        if algorithms is not None:
            if not _is_list_of_names(algorithms):
                raise ConfigError(f'{where}.algorithms must be a non-empty list, e.g. ["HS256"]')
            unsupported = set(algorithms) - SUPPORTED_ALGORITHMS
            if unsupported:
                # 'none' lands here too: an unsigned token is never accepted.
                raise ConfigError(
                    f"{where}: unsupported algorithm {', '.join(sorted(unsupported))}; "
                    f"use {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
                )
        kid = key_spec.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise ConfigError(f"{where}.kid must be a non-empty string")
        try:
            if "public_key_file" in key_spec:
                keys.append(load_public_key_file(cbdir / key_spec["public_key_file"], kid, algorithms, where))
            elif "jwks_file" in key_spec:
                path = cbdir / key_spec["jwks_file"]
                loaded = keys_from_jwks(_read_json(path, where), algorithms, str(path))
                if not loaded:
                    raise ConfigError(f"{where}: {path} holds no usable public key")
                keys.extend(loaded)
            elif "jwks_url" in key_spec:
                jwks_urls.append(_load_jwks_url(key_spec, algorithms, where))
            else:
                keys.append(_load_secret(key_spec, kid, algorithms, cbdir, generate_secret, where))
        except KeyConfigError as error:
            raise ConfigError(str(error)) from error
    kids = [k.kid for k in keys if k.kid is not None]
    if len(kids) != len(set(kids)):
        raise ConfigError("two keys share a kid; every kid must be unique")
    if sum(1 for k in keys if k.kid is None) > 1:
        raise ConfigError("only one key may go without a kid (it checks tokens that name no kid)")
    remote_algorithms = {a for u in jwks_urls for a in (u.algorithms or SUPPORTED_ALGORITHMS - HMAC_ALGORITHMS)}
    return KeyRing(keys, remote_algorithms), tuple(jwks_urls)


def _load_secret(spec: Mapping, kid, algorithms, cbdir: Path, generate: bool, where: str) -> VerificationKey:
    algorithms = algorithms or ["HS256"]
    if set(algorithms) - HMAC_ALGORITHMS:
        raise ConfigError(f"{where}: a shared secret verifies only {', '.join(sorted(HMAC_ALGORITHMS))}")
    secret_file, secret_env = spec.get("secret_file"), spec.get("secret_env")
    for name, value in (("secret_file", secret_file), ("secret_env", secret_env)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}.{name} must be a non-empty string")
    path = (cbdir / secret_file) if secret_file else None
    try:
        secret, source, generated = load_hmac_secret(secret_env, path, generate=generate)
    except KeyConfigError as error:
        raise ConfigError(f"{where}: {error}") from error
    return VerificationKey(
        kid=kid, algorithms=frozenset(algorithms), material=secret, source=source, generated=generated
    )


def _load_jwks_url(spec: Mapping, algorithms, where: str) -> JwksUrl:
    url = spec["jwks_url"]
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigError(f"{where}.jwks_url must be an http(s) URL")
    numbers = {
        name: spec.get(name, default)
        for name, default in (("refresh_seconds", 300), ("min_refetch_seconds", 30), ("timeout_seconds", 5))
    }
    for name, value in numbers.items():
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where}.{name} must be a positive number of seconds")
    return JwksUrl(url, tuple(algorithms) if algorithms else None, **{k: float(v) for k, v in numbers.items()})


def _read_json(path: Path, where: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{where}: {path} does not exist") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: {path} is not JSON ({error})") from error


def _is_list_of_names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def key_sources(settings: Settings) -> str:
    """Where the keys come from, for the ready line and the CLI: algorithms and source, never a key."""
    sources = [f"{'/'.join(sorted(k.algorithms))} from {k.source}" for k in settings.keys.keys]
    return "; ".join(sources + [f"JWKS {u.url}" for u in settings.jwks_urls])
