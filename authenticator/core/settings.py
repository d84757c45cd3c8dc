"""The authenticator's settings as the rest of the package sees them: frozen values, already
validated. authenticator/config/settings.py reads and checks them from the node config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from authenticator.core.keys import KeyRing
from authenticator.core.policy import Policy


class ConfigError(ValueError):
    """The configuration is unusable; the message says where and how to fix it."""


# From the WebSocket upgrade to WELCOME, unless the config says otherwise (authenticator/patches/hello_timeout.py).
DEFAULT_HELLO_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ClaimRules:
    authid_claim: str = "sub"
    roles_claims: tuple[str, ...] = ("roles", "role")
    required: tuple[str, ...] = ("exp",)
    leeway_seconds: float = 10.0
    authid_max_length: int = 64
    issuers: tuple[str, ...] = ()  # empty: any issuer
    audiences: tuple[str, ...] = ()  # empty: tokens that name an audience are refused (RFC 7519 4.1.3)
    max_lifetime_seconds: int | None = None
    # The claim listing the token's grants (authenticator/core/grants.py); absent: none.
    caps_claim: str = "caps"
    # The realm this component serves, and the claim a token names it in: "aud" (its audiences
    # must include the realm), another claim name (it must equal the realm), or None (no binding:
    # a node with one realm). A node with several realms binds by "aud" unless told otherwise.
    realm: str | None = None
    realm_claim: str | None = None
    node_realms: tuple[str, ...] = ()  # every realm of the node: a token may name only one of them


@dataclass(frozen=True)
class JwksUrl:
    url: str
    algorithms: tuple[str, ...] | None
    refresh_seconds: float = 300.0
    min_refetch_seconds: float = 30.0
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class StoreSpec:
    sqlite_path: Path | None = None
    redis_url: str | None = None
    # Longest wait for one answer from the store (Redis: per round trip and per connect; SQLite:
    # for a lock). Past it the login is refused store_unavailable: fail closed, and fast.
    timeout_seconds: float = 1.0


@dataclass(frozen=True)
class CookieRule:
    name: str
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can make the router hold or do (docs/reliability.md, hostile clients)."""

    max_uri_length: int = 512
    # Distinct (role, URI, action) answers the component lets Crossbar cache: its cache never
    # evicts, so past this budget answers are given uncached (correct, one authorizer call each).
    authorization_cache_entries: int = 10000
    # From the WebSocket upgrade to WELCOME; a client that has not joined by then is closed (1008).
    hello_timeout_seconds: int = DEFAULT_HELLO_TIMEOUT_SECONDS


@dataclass(frozen=True)
class PublishSettings:
    """POST /publish's idempotency keys (docs/publishing.md#idempotency-keys)."""

    # How long a publication's key answers a retry with its first answer.
    idempotency_window_seconds: int = 86_400
    # Keys one router worker remembers without Redis; past it the oldest is forgotten first.
    idempotency_max_keys: int = 100_000


@dataclass(frozen=True)
class HistorySettings:
    """The bounds of recovery's kept events (docs/recovery.md); which topics keep history is the policy's."""

    # What one publisher (authid) may have kept per minute on this router, payloads' JSON + 400
    # bytes each: past it its publications of history topics are refused until the minute ends, so
    # one user cannot fill the store (and, in memory, push every other stream out).
    publisher_bytes_per_minute: int = 16 * 2**20
    # The memory store: at most this many bytes of events and this many topics (least recently
    # used first out: its readers get recovered false).
    memory_max_bytes: int = 256 * 2**20
    memory_max_topics: int = 100_000


@dataclass(frozen=True)
class PresenceSettings:
    """Presence shared through Redis (docs/recovery.md#presence)."""

    # A router's entries expire this long after its last refresh (every third of it): the entries of
    # a router that died are gone from every answer at most this long after it died.
    ttl_seconds: int = 60


@dataclass(frozen=True)
class Settings:
    keys: KeyRing
    claims: ClaimRules
    policy: Policy
    max_token_bytes: int = 8192
    jwks_urls: tuple[JwksUrl, ...] = ()
    single_use: bool = False
    store: StoreSpec = StoreSpec()
    expiry_grace_seconds: float = 5.0
    # A login the router has not announced as joined after this long was abandoned by its client.
    join_timeout_seconds: float = 30.0
    # Behind Crossbar proxy workers the router session id differs from the one authentication saw.
    behind_proxies: bool = False
    # When the router stops, GOODBYE (wamp.close.system_shutdown) to every client session first.
    # The client kits reconnect after it; plain AutobahnJS does not reconnect after a GOODBYE
    # (it does after a dropped connection), so the demo config leaves it off.
    goodbye_on_stop: bool = False
    bearer_header: bool = True
    cookie: CookieRule | None = None
    limits: Limits = Limits()
    # Addresses of reverse proxies (nginx) whose X-Forwarded-For names the client, for log lines.
    trusted_proxies: frozenset[str] = frozenset()
    publish: PublishSettings = PublishSettings()
    presence: PresenceSettings = PresenceSettings()
    history: HistorySettings = HistorySettings()


# The demo issuer (authenticator/demo/issuer.py): its settings are checked with the rest at start.
TOKEN_TTL_SECONDS = 60


@dataclass(frozen=True)
class IssuerSettings:
    """`extra.issuer` of the authenticator component in .crossbar/config.json."""

    users_file: str = "users.json"
    token_ttl_seconds: int = TOKEN_TTL_SECONDS
    max_body_bytes: int = 4096
    login_attempts_per_minute: int = 10
    login_tracked_addresses: int = 10_000
    # Document shares (authenticator/demo/shares.py): their length, and how many are live at once.
    share_min_seconds: int = 60
    share_max_seconds: int = 3600
    max_shares: int = 100
