"""Presence (docs/recovery.md#presence): who holds an exact subscription to a topic, under the policy.

- What is tracked: exact subscriptions to topics where some policy rule could grant `presence`
  (core/policy.Policy.may_grant_presence), from Crossbar's subscription meta events
  (wamp.subscription.on_create/on_subscribe/on_unsubscribe/on_delete) and the session meta events
  (on_join gives the authid, on_leave ends every membership of the session). The broker publishes
  every subscription change of a session, its end included, in order (each on a later reactor
  turn); on_leave can come before the subscription events of the same session's last moments, so
  a subscription of a session that already left is never counted (its authid is forgotten).
- Who may ask: `authenticator.presence(topic)`, a caller whom the policy grants `presence` on that
  exact topic; the join/leave events on `authenticator.presence.<topic>` go to exact subscribers
  the authorizer allowed under the same rule (server/authorizer.py).
- Where it is kept: this process (core/presence.PresenceTable) or, when the component is
  configured with Redis, Redis as well (server/redis_presence.py), shared by every router. Then
  Redis decides join and leave across routers and every router relays the announcements; changes
  go to Redis in order, one batch at a time, on the component's I/O threads; each router
  refreshes its entries every third of `presence.ttl_seconds`.
"""

from __future__ import annotations

import secrets

from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor, task
from twisted.internet.threads import deferToThreadPool

from authenticator.contract import PRESENCE_TOPIC_PREFIX, PRESENCE_UNAVAILABLE
from authenticator.core import redis_url
from authenticator.core.logtext import clip
from authenticator.core.presence import MAX_AUTHIDS, Change, PresenceTable, answer

# Changes waiting for Redis while a batch is in flight; past it the oldest are dropped (an add
# dropped comes back with the next refresh, a remove dropped expires with its entry's TTL).
MAX_PENDING = 100_000


class Presence:
    def __init__(self, settings, authorizer, token_roles, publish, io_pool, log, clock=reactor) -> None:
        self._policy, self._authorizer, self._token_roles = settings.policy, authorizer, token_roles
        self._publish, self._io, self._log, self._clock = publish, io_pool, log, clock
        self._max_uri_length = settings.limits.max_uri_length
        self.table = PresenceTable()
        self._authids: dict[int, str] = {}  # session -> authid, from on_join until on_leave
        self._topics: dict[int, str] = {}  # subscription id -> topic, for the tracked ones
        self._pending: list[tuple] = []
        self._in_flight = False
        self._stop_listening = None
        self.shared = None
        self._ttl = settings.presence.ttl_seconds
        self._realm = settings.claims.realm  # its own Redis channel of joins and leaves
        if settings.store.redis_url:
            import redis

            from authenticator.server.redis_presence import RedisPresence, events_channel

            timeout = settings.store.timeout_seconds
            self._client_factory = lambda: redis.Redis.from_url(
                settings.store.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._where = redis_url.shown(settings.store.redis_url)  # never log a password (userinfo or query)
            self.shared = RedisPresence(self._client_factory(), node=secrets.token_hex(8), ttl_seconds=self._ttl,
                                        channel=events_channel(settings.claims.realm),
                                        namespace=redis_url.realm_namespace(settings.claims))  # fmt: skip
            self._errors = (redis.RedisError, OSError)
            self._refresh = task.LoopingCall(self._refresh_entries)
            self._refresh.clock = clock

    def start(self) -> None:
        if self.shared is None:
            return
        from authenticator.server.redis_presence import events_channel, listen_for_events

        self._stop_listening = listen_for_events(
            self._client_factory,
            lambda topic, event, authid: reactor.callFromThread(self._announce, Change(event, topic, authid)),
            lambda problem: reactor.callFromThread(self._log.warn, "authenticator: {problem}", problem=problem),
            self._where,
            channel=events_channel(self._realm),
        )
        self._refresh.start(self._ttl / 3, now=False)

    def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening.set()
        if self.shared is not None and self._refresh.running:
            self._refresh.stop()

    # -- Crossbar's meta events (on the reactor) -----------------------------------------------

    def joined(self, details) -> None:
        """Client sessions only: a session of a static role (a router link, the proxies' service
        session, this component) is nobody's presence."""
        if isinstance(details, dict) and isinstance(details.get("session"), int):
            authid = details.get("authid")
            if isinstance(authid, str) and details.get("authrole") in self._policy.roles:
                self._authids[details["session"]] = authid

    def left(self, session_id) -> None:
        self._authids.pop(session_id, None)
        for topic in self.table.topics_of(session_id):
            self._changed(self.table.unsubscribed(topic, session_id), ("remove", topic, session_id))

    def created(self, session_id, subscription) -> None:
        if not isinstance(subscription, dict) or subscription.get("match") != "exact":
            return  # a pattern's subscribers are no topic's members
        topic = subscription.get("uri")
        if isinstance(topic, str) and self._is_tracked(topic):
            self._topics[subscription.get("id")] = topic

    def subscribed(self, session_id, subscription_id) -> None:
        topic = self._topics.get(subscription_id)
        authid = self._authids.get(session_id)
        if topic is None or authid is None:
            return  # not a tracked topic, or the session left already
        if self.table.holds(session_id, topic):
            return
        change = self.table.subscribed(topic, session_id, authid)
        self._changed(change, ("add", topic, session_id, authid))

    def unsubscribed(self, session_id, subscription_id) -> None:
        topic = self._topics.get(subscription_id)
        if topic is None or not self.table.holds(session_id, topic):
            return
        change = self.table.unsubscribed(topic, session_id)
        self._changed(change, ("remove", topic, session_id))

    def deleted(self, session_id, subscription_id) -> None:
        self._topics.pop(subscription_id, None)

    def _is_tracked(self, topic: str) -> bool:
        # Asked once per new subscription, so not memoized: a memo of client-chosen topics grew the
        # router by ~0.5 KB per fresh topic (tests/router/test_hostile_clients.py, distinct topics).
        # The events topics themselves are not tracked: nobody is present on a presence feed.
        return not topic.startswith(PRESENCE_TOPIC_PREFIX) and self._policy.may_grant_presence(topic)

    def _changed(self, change: Change | None, operation: tuple) -> None:
        if self.shared is None:
            if change is not None:
                self._announce(change)
            return
        self._queue(operation)

    # -- announcements --------------------------------------------------------------------------

    def _announce(self, change: Change) -> None:
        try:
            self._publish(PRESENCE_TOPIC_PREFIX + change.topic, **change.as_kwargs())
        except Exception as error:  # noqa: BLE001 - one lost announcement must not stop the tracking
            self._log.warn("presence: could not announce a {event} on {topic}: {kind}", event=change.event,
                           topic=clip(change.topic, 200), kind=type(error).__name__)  # fmt: skip

    # -- Redis: changes in order, one batch at a time, on the I/O threads ------------------------

    def _queue(self, operation: tuple) -> None:
        self._pending.append(operation)
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        if not self._in_flight:
            self._send()

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        self._in_flight = True
        d = deferToThreadPool(reactor, self._io, self.shared.apply, batch)
        d.addErrback(self._send_failed, len(batch))
        d.addBoth(self._sent)

    def _send_failed(self, failure, n: int) -> None:
        self._log.warn("presence: {n} change(s) did not reach Redis at {where}: {kind} (adds come back with the "
                       "next refresh, removes expire)", n=n, where=self._where,
                       kind=type(failure.value).__name__)  # fmt: skip

    def _sent(self, _) -> None:
        self._in_flight = False
        if self._pending:
            self._send()

    def _refresh_entries(self) -> None:
        """Every third of the TTL: this router's entries again (an add refreshes an entry, and puts
        one back that Redis dropped meanwhile); queued, so after every change made before it."""
        for topic, session_id, authid in self.table.entries():
            self._queue(("add", topic, session_id, authid))

    # -- authenticator.presence -----------------------------------------------------------------

    async def presence(self, topic, details=None):
        caller = _caller(details)
        if not isinstance(topic, str) or not topic or len(topic) > self._max_uri_length:
            problem = f"topic must be a topic URI of at most {self._max_uri_length} characters"
            raise ApplicationError("wamp.error.invalid_argument", problem)
        decision = self._authorizer.decide(
            authrole=caller.get("authrole"), authid=caller.get("authid"), roles=self._token_roles(caller),
            action="presence", uri=topic, options={"match": "exact"}, via="presence",
            grants=self._authorizer.session_grants(caller),
        )  # fmt: skip
        if not decision.allow:
            raise ApplicationError("wamp.error.not_authorized", decision.reason)
        if self.shared is None:
            return self.table.answer(topic, MAX_AUTHIDS)
        try:
            authids = await deferToThreadPool(reactor, self._io, self.shared.read, topic)
        except self._errors as error:
            self._log.warn("presence: could not read {topic} from Redis at {where}: {kind}", topic=clip(topic, 200),
                           where=self._where, kind=type(error).__name__)  # fmt: skip
            raise ApplicationError(PRESENCE_UNAVAILABLE, "The presence store cannot be reached; retry.") from None
        return answer(enumerate(authids), MAX_AUTHIDS)


def _caller(details) -> dict:
    """The caller as the authorizer sees a session (Crossbar discloses callers of our procedures)."""
    return {
        "session": getattr(details, "caller", None),
        "authid": getattr(details, "caller_authid", None),
        "authrole": getattr(details, "caller_authrole", None),
    }
