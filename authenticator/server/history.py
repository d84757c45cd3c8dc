"""Recovery (docs/recovery.md): the events of history topics kept as they are published, and the
`authenticator.history` procedure that hands them back, under the policy.

- Which topics keep history, and how much: the policy's rules (core/policy.Policy.history_for).
- Where: in this process (core/history.MemoryHistory; a restart starts every stream again with a
  new epoch) or, when the component is configured with Redis, in Redis
  (server/redis_history.RedisHistory), shared by every router of the deployment.
- When: after Crossbar authorized a publication and before any EVENT of it is sent
  (patches/event_positions.py), so that every live event's position can be read back.
- Who may read: a caller whom the policy lets subscribe to that exact topic.

Redis appends run on one thread of their own, in the order the publications were authorized, so
that a router dispatches a topic's events in the order of their offsets; reads run on the
component's I/O threads. Nothing here blocks the reactor.
"""

from __future__ import annotations

import time

from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor
from twisted.internet.defer import fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from authenticator.contract import HISTORY_UNAVAILABLE, NO_HISTORY
from authenticator.core.history import (
    EVENT_OVERHEAD_BYTES as KEPT_EVENT_BYTES,
)
from authenticator.core.history import (
    MAX_LIMIT,
    Answer,
    MemoryHistory,
    PositionProblem,
    payload_bytes,
    read_position,
)
from authenticator.core.logtext import clip
from authenticator.core.policy import observed_topics
from authenticator.patches.event_positions import HistoryTap

DEFAULT_LIMIT = 100
# Appends waiting for the Redis writer at once: past it a publication is refused at once (the
# writer is behind: Redis is slow), rather than queued without bound.
MAX_WAITING_APPENDS = 1000
READ_THREADS = 2
MAX_WAITING_READS = 100
# After a failed append, appends are refused at once for this long (Redis is down: publishers get
# their answer without waiting a timeout each, and the log gets one line), then one is tried.
RETRY_SECONDS = 1.0
# An answer must fit in one WAMP message to the client: the node's smallest max_message_size
# (config/node_config.smallest_max_message_size), this when none is known.
DEFAULT_MESSAGE_BYTES = 65_536
ANSWER_OVERHEAD_BYTES = 4096  # the answer's own keys and framing, beside the events
EVENT_OVERHEAD_BYTES = 160  # an event's keys and position in the answer (JSON), beside its payload
BUDGET_WINDOW_SECONDS = 60.0  # settings.history.publisher_bytes_per_minute's minute


class HistoryUnavailable(Exception):
    """The history store could not keep or read an event; str() is what the client is told."""


class _KnownDown(Exception):
    """An append refused without asking the store: the one before it failed just now."""


class History:
    def __init__(self, settings, authorizer, token_roles, log, *, max_message_size: int | None = None) -> None:
        self._policy, self._authorizer, self._token_roles = settings.policy, authorizer, token_roles
        self._log = log
        self._max_uri_length = settings.limits.max_uri_length
        self._answer_bytes = max((max_message_size or DEFAULT_MESSAGE_BYTES) - ANSWER_OVERHEAD_BYTES, 1)
        self._waiting_appends = self._waiting_reads = 0  # on the reactor
        # Set by the writer thread, read by both: appends are refused at once until then (monotonic).
        self._down_until: float | None = None
        redis_url = settings.store.redis_url
        if redis_url:
            import redis

            from authenticator.core.redis_url import realm_namespace
            from authenticator.server.redis_history import RedisHistory

            timeout = settings.store.timeout_seconds
            client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self.store = RedisHistory(client, clock=time.time, namespace=realm_namespace(settings.claims))
            self._errors = (redis.RedisError, OSError)
            self._writer = ThreadPool(minthreads=1, maxthreads=1, name="authenticator-history")
            # Reads on threads of their own: a slow Redis never holds the logins' store threads.
            self._reader = ThreadPool(minthreads=1, maxthreads=READ_THREADS, name="authenticator-history-read")
        else:
            bounds = settings.history
            self.store = MemoryHistory(max_streams=bounds.memory_max_topics, max_bytes=bounds.memory_max_bytes,
                                       clock=time.monotonic)  # fmt: skip
            self._errors = ()
            self._writer = self._reader = None
        # With a shared store, an event a router link relays from another router was kept there: a
        # link publishes it with forward_for (the original publisher), which the authorizer refuses
        # to every client session, so it marks a relay and nothing else.
        self.tap = HistoryTap(
            self.keep, lambda topic: self._policy.history_for(topic) is not None,
            lambda publish: self._writer is not None and bool(publish.forward_for), self._refused,
            self._over_budget,
        )  # fmt: skip
        self._budget = settings.history.publisher_bytes_per_minute
        self._window_started, self._spent = time.monotonic(), {}  # publisher -> bytes kept this minute

    def observed(self) -> list[tuple[str, str]]:
        return sorted({observed_topics(rule) for rule in self._policy.history_rules()})

    def start(self) -> None:
        if self._writer is not None:
            for pool in (self._writer, self._reader):
                pool.start()
                reactor.addSystemEventTrigger("during", "shutdown", pool.stop)

    # -- keeping (from the tap, on the reactor) -----------------------------------------------

    def keep(self, topic: str, args, kwargs, publisher_authid):
        _, kept = self._policy.history_for(topic)
        if self._writer is None:
            return self.store.append(topic, args, kwargs, publisher_authid, size=kept.size,
                                     ttl_seconds=kept.ttl_seconds).as_wire()  # fmt: skip
        if self._known_down() or self._waiting_appends >= MAX_WAITING_APPENDS:
            return fail(self._unavailable())  # at once: no timeout each, no line each
        self._waiting_appends += 1
        d = deferToThreadPool(reactor, self._writer, self._append_on_writer, topic, args, kwargs, publisher_authid,
                              size=kept.size, ttl_seconds=kept.ttl_seconds)  # fmt: skip
        d.addBoth(self._appended)
        return d.addCallbacks(lambda position: position.as_wire(), self._keep_failed, errbackArgs=(topic,))

    def _known_down(self) -> bool:
        down_until = self._down_until
        return down_until is not None and time.monotonic() < down_until

    def _append_on_writer(self, *args, **kwargs):
        return self._on_store_thread(self.store.append, *args, **kwargs)

    def _on_store_thread(self, operation, *args, **kwargs):
        """On a store thread: calls queued behind one that failed are refused at once (Redis is
        down), not one timeout after the other; past RETRY_SECONDS the next one tries."""
        if self._known_down():
            raise _KnownDown()
        try:
            result = operation(*args, **kwargs)
        except BaseException:
            self._down_until = time.monotonic() + RETRY_SECONDS
            raise
        self._down_until = None
        return result

    def _appended(self, result):
        self._waiting_appends -= 1
        return result

    def _keep_failed(self, failure, topic: str):
        if not failure.check(_KnownDown):  # one line per failed try, at most one per RETRY_SECONDS
            self._log.warn("history: could not keep an event of {topic}: {kind}; publications of history topics "
                           "are refused for {seconds} s, then one is tried", topic=clip(topic, 200),
                           kind=type(failure.value).__name__, seconds=RETRY_SECONDS)  # fmt: skip
        raise self._unavailable()

    @staticmethod
    def _unavailable() -> HistoryUnavailable:
        return HistoryUnavailable(
            f"{HISTORY_UNAVAILABLE}: the history store did not confirm keeping the event, so it was not sent to "
            "subscribers (after a timeout it may have been kept: a retry can keep it twice). Retry."
        )

    def _over_budget(self, publish, session) -> str | None:
        """Why this publisher may not have more kept this minute, or None (and it is counted)."""
        now = time.monotonic()
        if now - self._window_started >= BUDGET_WINDOW_SECONDS:
            self._window_started, self._spent = now, {}
        publisher = getattr(session, "_authid", None) or getattr(session, "_session_id", None)
        spent = (
            self._spent.get(publisher, 0) + KEPT_EVENT_BYTES + payload_bytes(publish.args or (), publish.kwargs or {})
        )
        if spent > self._budget:
            return (f"the publisher had {self._budget} bytes of events kept within a minute on this router "
                    "(history.publisher_bytes_per_minute); its publications of history topics are refused until the "
                    "minute ends")  # fmt: skip
        self._spent[publisher] = spent
        return None

    def _refused(self, publish, session, reason: str) -> None:
        self._log.warn("authorization denied: publish {uri} authid={authid} role={role} via=history reason={reason}",
                       uri=clip(publish.topic, 200), authid=getattr(session, "_authid", None),
                       role=getattr(session, "_authrole", None), reason=reason)  # fmt: skip

    # -- reading: authenticator.history ---------------------------------------------------------

    async def read(self, topic, since=None, limit=DEFAULT_LIMIT, details=None):
        caller = _caller(details)
        if not isinstance(topic, str) or not topic or len(topic) > self._max_uri_length:
            problem = f"topic must be a topic URI of at most {self._max_uri_length} characters"
            raise ApplicationError("wamp.error.invalid_argument", problem)
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise ApplicationError("wamp.error.invalid_argument", f"limit must be a whole number from 1 to {MAX_LIMIT}")
        try:
            position = read_position(since)
        except PositionProblem as problem:
            raise ApplicationError("wamp.error.invalid_argument", str(problem)) from None
        decision = self._authorizer.decide(
            authrole=caller.get("authrole"), authid=caller.get("authid"), roles=self._token_roles(caller),
            action="subscribe", uri=topic, options={"match": "exact"}, via="history",
            grants=self._authorizer.session_grants(caller),
        )  # fmt: skip
        if not decision.allow:
            raise ApplicationError(
                "wamp.error.not_authorized",
                f"history of '{clip(topic, 200)}' is read by its subscribers only: {decision.reason}",
            )
        found = self._policy.history_for(topic)
        if found is None:
            raise ApplicationError(
                NO_HISTORY, f"'{clip(topic, 200)}' keeps no history: no policy rule gives it 'history'"
            )
        _, kept = found
        if self._writer is None:
            answer = self.store.read(topic, position, limit, size=kept.size, ttl_seconds=kept.ttl_seconds)
        else:
            unavailable = ApplicationError(
                HISTORY_UNAVAILABLE, "The history store cannot be reached; retry (the kits do)."
            )
            if self._known_down() or self._waiting_reads >= MAX_WAITING_READS:
                raise unavailable  # at once: Redis is down or behind (its own threads: logins never wait)
            self._waiting_reads += 1
            try:
                answer = await deferToThreadPool(
                    reactor, self._reader, self._on_store_thread, self.store.read, topic, position, limit,
                    size=kept.size, ttl_seconds=kept.ttl_seconds,
                )  # fmt: skip
            except _KnownDown:
                raise unavailable from None
            except self._errors as error:
                self._log.warn("history: could not read {topic}: {kind}; reads and appends are refused for {seconds} s",
                               topic=clip(topic, 200), kind=type(error).__name__, seconds=RETRY_SECONDS)  # fmt: skip
                raise unavailable from None
            finally:
                self._waiting_reads -= 1
        return as_wire(answer, self._answer_bytes)


def as_wire(answer: Answer, max_bytes: int) -> dict:
    """The answer as the client gets it: its events up to `max_bytes` of payload (always one), so
    that it fits in one message; the rest is a next page (the last event's position < `position`)."""
    events, weight = [], 0
    for position, event in answer.events:
        weight += EVENT_OVERHEAD_BYTES + payload_bytes(event.args, event.kwargs) + len(event.publisher_authid or "")
        if events and weight > max_bytes:
            break
        item = {"position": position.as_wire(), "args": list(event.args), "kwargs": dict(event.kwargs)}
        if event.publisher_authid is not None:
            item["publisher_authid"] = event.publisher_authid
        events.append(item)
    return {"events": events, "position": answer.position.as_wire(), "recovered": answer.recovered}


def _caller(details) -> dict:
    """The caller as the authorizer sees a session (Crossbar discloses callers of our procedures)."""
    return {
        "session": getattr(details, "caller", None),
        "authid": getattr(details, "caller_authid", None),
        "authrole": getattr(details, "caller_authrole", None),
    }
