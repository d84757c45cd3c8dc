"""Prometheus metrics of the authenticator, served by the router at /metrics (prometheus-client).

The component (reactor thread) counts; Crossbar's wsgi path service serves ``app`` from its
thread pool in the same router worker process, so both see one registry. Labels are bounded
sets (reasons, roles of the policy, actions) — never an authid, a token or a URI.

Active sessions by role come from Crossbar itself (``wamp.session.count``) at scrape time, so
they include anonymous sessions and are right behind proxies too; the embedded sessions HTTP
publications are made from (POST /publish) are not clients and are not counted.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # the router worker's CPU, memory, open files

AUTHENTICATIONS = Counter(
    "crossbar_jwt_authentications", "Logins by outcome (accepted, refused) and refusal reason.",
    ["outcome", "reason"], registry=REGISTRY,
)  # fmt: skip
AUTHORIZATIONS = Counter(
    "crossbar_jwt_authorizations",
    "Decisions the authorizer made, by action and outcome. Answers Crossbar serves from its cache "
    "(cacheable role-wide allows) and a session's reused publish allows do not reach the authorizer and are not "
    "counted.",
    ["action", "outcome", "cacheable"], registry=REGISTRY,
)  # fmt: skip
SESSIONS_ENDED = Counter(
    "crossbar_jwt_sessions_ended", "Live sessions the authenticator ended, by reason (expired, revoked).",
    ["reason"], registry=REGISTRY,
)  # fmt: skip
REVOCATIONS = Counter(
    "crossbar_jwt_revocations",
    "Revocations, by what they name (authid, jti) and where they were made (here, elsewhere).",
    ["kind", "origin"], registry=REGISTRY,
)  # fmt: skip
REFRESHES = Counter(
    "crossbar_jwt_refreshes", "Token refreshes of live sessions, by outcome and refusal reason.",
    ["outcome", "reason"], registry=REGISTRY,
)  # fmt: skip
HTTP_PUBLISHES = Counter(
    "crossbar_jwt_http_publishes",
    "Publications over HTTP (POST /publish), by outcome (published, denied, invalid, token_refused, "
    "too_large, method, unavailable, failed, replayed, in_progress, key_reused) and reason (the token refusal's "
    "code, else none). A batch counts each of its publications; a request refused as a whole counts once.",
    ["outcome", "reason"], registry=REGISTRY,
)  # fmt: skip
JWKS_FETCHES = Counter("crossbar_jwt_jwks_fetches", "JWKS fetches, by outcome (ok, failed).", ["outcome"],
                       registry=REGISTRY)  # fmt: skip


class ActiveSessions:
    """Scrape-time gauge; `count(role)` is installed by the component once it has joined.

    Asking the router can fail (the component's call times out after 2 s): the scrape then still
    answers, with no active-session samples at all (a partial set would understate the total) and
    ``crossbar_jwt_active_sessions_scrape_ok`` 0. The first failure ends the asking, so a scrape
    waits for at most one timeout."""

    def __init__(self) -> None:
        self.count: Callable[[str], int] | None = None
        self.roles: tuple[str, ...] = ()

    def collect(self):
        gauge = GaugeMetricFamily(
            "crossbar_jwt_active_sessions",
            "Client sessions on the realm, by role (not the embedded sessions of POST /publish).", labels=["role"],
        )  # fmt: skip
        counts = self._counts()
        for role, sessions in counts or ():
            gauge.add_metric([role], sessions)
        yield gauge
        yield GaugeMetricFamily(
            "crossbar_jwt_active_sessions_scrape_ok",
            "1 when this scrape read the active sessions of every role from the router, else 0.",
            value=0 if counts is None else 1,
        )

    def _counts(self) -> list[tuple[str, int]] | None:
        count = self.count
        if count is None:
            return None  # not joined (yet, or any more): unknown, not zero
        try:
            return [(role, count(role)) for role in self.roles]
        except Exception:  # noqa: BLE001 - a failed count must not take the other metrics down with it
            return None


ACTIVE_SESSIONS = ActiveSessions()
REGISTRY.register(ACTIVE_SESSIONS)

# Crossbar: "metrics": {"type": "wsgi", "module": "authenticator.endpoints.metrics", "object": "app"}
app = make_wsgi_app(REGISTRY)
