"""Prometheus metrics of the authenticator, served by the router at /metrics (prometheus-client).

The component (reactor thread) counts; Crossbar's wsgi path service serves ``app`` from its
thread pool in the same router worker process, so both see one registry. Labels are bounded
sets (the realms of the node, reasons, roles of the policy, actions) — never an authid, a token or
a URI. Every metric has a `realm` label: one component per realm, one registry per worker; an HTTP
request refused before its token named a realm counts under realm "none".

Active sessions by role come from Crossbar itself (``wamp.session.count``) at scrape time, so
they include anonymous sessions and are right behind proxies too; the embedded sessions HTTP
publications are made from (POST /publish) are not clients and are not counted.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily

# The realm label of what was refused before any realm was known (an HTTP request without a usable token).
NO_REALM = "none"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # the router worker's CPU, memory, open files

AUTHENTICATIONS = Counter(
    "crossbar_jwt_authentications", "Logins by outcome (accepted, refused) and refusal reason.",
    ["realm", "outcome", "reason"], registry=REGISTRY,
)  # fmt: skip
AUTHORIZATIONS = Counter(
    "crossbar_jwt_authorizations",
    "Decisions the authorizer made, by action and outcome. Answers Crossbar serves from its cache "
    "(cacheable role-wide allows) and a session's reused publish allows do not reach the authorizer and are not "
    "counted.",
    ["realm", "action", "outcome", "cacheable"], registry=REGISTRY,
)  # fmt: skip
SESSIONS_ENDED = Counter(
    "crossbar_jwt_sessions_ended", "Live sessions the authenticator ended, by reason (expired, revoked).",
    ["realm", "reason"], registry=REGISTRY,
)  # fmt: skip
REVOCATIONS = Counter(
    "crossbar_jwt_revocations",
    "Revocations, by what they name (authid, jti) and where they were made (here, elsewhere).",
    ["realm", "kind", "origin"], registry=REGISTRY,
)  # fmt: skip
REFRESHES = Counter(
    "crossbar_jwt_refreshes", "Token refreshes of live sessions, by outcome and refusal reason.",
    ["realm", "outcome", "reason"], registry=REGISTRY,
)  # fmt: skip
HTTP_PUBLISHES = Counter(
    "crossbar_jwt_http_publishes",
    "Publications over HTTP (POST /publish), by outcome (published, denied, invalid, token_refused, "
    "too_large, method, unavailable, failed, replayed, in_progress, key_reused) and reason (the token refusal's "
    "code, else none). A batch counts each of its publications; a request refused as a whole counts once.",
    ["realm", "outcome", "reason"], registry=REGISTRY,
)  # fmt: skip
JWKS_FETCHES = Counter("crossbar_jwt_jwks_fetches", "JWKS fetches, by outcome (ok, failed).", ["realm", "outcome"],
                       registry=REGISTRY)  # fmt: skip


class ActiveSessions:
    """Scrape-time gauge; each realm's component installs `count(role)` for its roles once it has
    joined (`serve`), and takes it away when it leaves (`stop`).

    Asking the router can fail (the component's call times out after 2 s): the scrape then still
    answers, with no active-session samples of that realm (a partial set would understate its
    total) and ``crossbar_jwt_active_sessions_scrape_ok`` 0 for it. The first failure ends the
    asking of that realm, so a scrape waits for at most one timeout per realm."""

    def __init__(self) -> None:
        self._realms: dict[str, tuple[tuple[str, ...], Callable[[str], int]]] = {}

    def serve(self, realm: str, roles: tuple[str, ...], count: Callable[[str], int]) -> None:
        self._realms[realm] = (roles, count)

    def stop(self, realm: str) -> None:
        self._realms.pop(realm, None)

    def collect(self):
        gauge = GaugeMetricFamily(
            "crossbar_jwt_active_sessions",
            "Client sessions on the realm, by role (not the embedded sessions of POST /publish).",
            labels=["realm", "role"],
        )  # fmt: skip
        ok = GaugeMetricFamily(
            "crossbar_jwt_active_sessions_scrape_ok",
            "1 when this scrape read the active sessions of every role of the realm from the router, else 0.",
            labels=["realm"],
        )  # fmt: skip
        for realm, (roles, count) in sorted(self._realms.items()):
            counts = self._counts(roles, count)
            for role, sessions in counts or ():
                gauge.add_metric([realm, role], sessions)
            ok.add_metric([realm], 0 if counts is None else 1)
        if not self._realms:  # no component has joined (yet, or any more): unknown, not zero
            ok.add_metric([NO_REALM], 0)
        yield gauge
        yield ok

    @staticmethod
    def _counts(roles: tuple[str, ...], count: Callable[[str], int]) -> list[tuple[str, int]] | None:
        try:
            return [(role, count(role)) for role in roles]
        except Exception:  # noqa: BLE001 - a failed count must not take the other metrics down with it
            return None


def realm_label(settings) -> str:
    """The realm label of a component's metrics (its settings name the realm it serves)."""
    return settings.claims.realm or NO_REALM


ACTIVE_SESSIONS = ActiveSessions()
REGISTRY.register(ACTIVE_SESSIONS)

# Crossbar: "metrics": {"type": "wsgi", "module": "authenticator.endpoints.metrics", "object": "app"}
app = make_wsgi_app(REGISTRY)
