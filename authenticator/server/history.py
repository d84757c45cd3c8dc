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
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from authenticator.contract import HISTORY_UNAVAILABLE, NO_HISTORY
from authenticator.core.history import MAX_LIMIT, Answer, MemoryHistory, PositionProblem, read_position
from authenticator.core.logtext import clip
from authenticator.core.policy import observed_topics
from authenticator.patches.event_positions import HistoryTap

DEFAULT_LIMIT = 100
# Topics the memory store keeps at once; the least recently used stream goes first (its topic
# starts again with a new epoch: its readers get recovered false).
MEMORY_MAX_TOPICS = 100_000


class HistoryUnavailable(Exception):
    """The history store could not keep or read an event; str() is what the client is told."""


class History:
    def __init__(self, settings, authorizer, token_roles, io_pool, log) -> None:
        self._policy, self._authorizer, self._token_roles = settings.policy, authorizer, token_roles
        self._io, self._log = io_pool, log
        self._max_uri_length = settings.limits.max_uri_length
        redis_url = settings.store.redis_url
        if redis_url:
            import redis

            from authenticator.server.redis_history import RedisHistory

            timeout = settings.store.timeout_seconds
            client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self.store = RedisHistory(client, clock=time.time)
            self._errors = (redis.RedisError, OSError)
            self._writer = ThreadPool(minthreads=1, maxthreads=1, name="authenticator-history")
        else:
            self.store = MemoryHistory(max_streams=MEMORY_MAX_TOPICS, clock=time.monotonic)
            self._errors = ()
            self._writer = None
        # With a shared store, an event a router link relays from another router was kept there
        # (links authenticate with static roles, which the policy does not define).
        self.tap = HistoryTap(
            self.keep, lambda topic: self._policy.history_for(topic) is not None,
            lambda session: self._writer is not None and getattr(session, "_authrole", None) not in self._policy.roles,
        )  # fmt: skip

    @property
    def shared(self) -> bool:
        return self._writer is not None

    def observed(self) -> list[tuple[str, str]]:
        return sorted({observed_topics(rule) for rule in self._policy.history_rules()})

    def start(self) -> None:
        if self._writer is not None:
            self._writer.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._writer.stop)

    # -- keeping (from the tap, on the reactor) -----------------------------------------------

    def keep(self, topic: str, args, kwargs, publisher_authid):
        _, kept = self._policy.history_for(topic)
        if self._writer is None:
            return self.store.append(topic, args, kwargs, publisher_authid, size=kept.size,
                                     ttl_seconds=kept.ttl_seconds).as_wire()  # fmt: skip
        d = deferToThreadPool(reactor, self._writer, self.store.append, topic, args, kwargs, publisher_authid,
                              size=kept.size, ttl_seconds=kept.ttl_seconds)  # fmt: skip
        return d.addCallbacks(lambda position: position.as_wire(), self._keep_failed, errbackArgs=(topic,))

    def _keep_failed(self, failure, topic: str):
        self._log.warn("history: could not keep an event of {topic}: {kind}; the publication is refused",
                       topic=clip(topic, 200), kind=type(failure.value).__name__)  # fmt: skip
        raise HistoryUnavailable(
            f"{HISTORY_UNAVAILABLE}: the history store cannot be reached, so the event was not published "
            "(its subscribers could not recover it). Retry."
        )

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
            try:
                answer = await deferToThreadPool(reactor, self._io, self.store.read, topic, position, limit,
                                                 size=kept.size, ttl_seconds=kept.ttl_seconds)  # fmt: skip
            except self._errors as error:
                self._log.warn("history: could not read {topic}: {kind}", topic=clip(topic, 200),
                               kind=type(error).__name__)  # fmt: skip
                raise ApplicationError(
                    HISTORY_UNAVAILABLE, "The history store cannot be reached; retry (the kits do)."
                ) from None
        return as_wire(answer)


def as_wire(answer: Answer) -> dict:
    events = []
    for position, event in answer.events:
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
