"""The sessions HTTP publications are published from: one embedded router session per identity.

A subscriber must see an HTTP publication exactly as one from a WAMP client of that identity:
``publisher_authid``/``publisher_authrole`` are the token's when the rule discloses the publisher,
there is no ``forward_for`` (which would also stop router links from passing the event on), and
the broker applies its own checks (receiver filters, retain, payload). So each (authid, role) gets
a session embedded in the router (as Crossbar's own HTTP bridge gets one for its fixed role), kept
for reuse in a bounded pool and closed when idle.

Their publishes are authorized by the decision the resource already made with the policy, not by
a second authorizer round trip through the router (which would halve the rate): the router's
``authorize`` is wrapped so that, for these sessions only, it answers with the decision set for
the one publish being processed. Crossbar processes an embedded session's PUBLISH synchronously,
within ``send``; a publish whose decision is not there (any other action, any other URI, a
decision already used) is denied. Fail closed.

They are not clients: Crossbar's own session count (``wamp.session.count``) includes them, and the
live-session gauge leaves them out (``PublisherPool.held``, authenticator/server/component.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from authenticator.patches.guard import guard_this_process
from authenticator.patches.publisher_decisions import install_decision_hook

# Crossbar answers an embedded publish at once; one whose answer never comes (an exception inside
# the broker is swallowed by Router.process) must not hold its HTTP request forever.
PUBLISH_TIMEOUT_SECONDS = 10
# What an application watching wamp.session.on_join sees of these sessions.
AUTHEXTRA = {"via": "http"}


class PublisherSession(ApplicationSession):
    """An embedded session that only publishes, as one identity, with decisions made beforehand."""

    def __init__(self, realm: str, authid: str, authrole: str) -> None:
        super().__init__(ComponentConfig(realm=realm))
        self.identity = (authid, authrole)
        self.decision: tuple[str, dict] | None = None  # (topic, Crossbar answer) of the publish in `send`
        self.last_used = time.monotonic()
        self.gone = False
        self._waiting: dict[int, Deferred] = {}

    def publish_decided(self, topic: str, args: list, kwargs: dict, options: dict, answer: dict) -> Deferred:
        """Publish with `answer` as the router's authorization; fires with the publication id, or
        fails with ApplicationError (the broker's refusal)."""
        request = self._request_id_gen.next()
        publish = message.Publish(request, topic, args=args, kwargs=kwargs, acknowledge=True, **options)
        done = Deferred()
        self._waiting[request] = done
        done.addTimeout(PUBLISH_TIMEOUT_SECONDS, reactor, onTimeoutCancel=lambda *_: self._gave_up(request))
        self.decision = (topic, answer)
        try:
            self._transport.send(publish)
        finally:
            self.decision = None  # never left for a later message
        return done

    def _gave_up(self, request: int) -> None:
        self._waiting.pop(request, None)
        raise ApplicationError("wamp.error.timeout", "The router did not acknowledge the publication.")

    def onMessage(self, msg):  # noqa: N802 - Autobahn's name
        if isinstance(msg, (message.Published, message.Error)) and msg.request in self._waiting:
            waiting = self._waiting.pop(msg.request)
            if isinstance(msg, message.Published):
                waiting.callback(msg.publication)
            else:
                text = msg.args[0] if msg.args and isinstance(msg.args[0], str) else msg.error
                waiting.errback(ApplicationError(msg.error, text))
            return
        super().onMessage(msg)

    def onLeave(self, details):  # noqa: N802 - Autobahn's name
        self.gone = True
        for waiting in self._waiting.values():
            waiting.errback(ApplicationError("wamp.error.canceled", "The publishing session ended."))
        self._waiting.clear()
        super().onLeave(details)  # disconnects: the router detaches the session


class PublisherPool:
    """At most `size` publisher sessions, the least recently used closed first, and every one
    closed after `idle_seconds` without a publication.

    It also knows every session it made that the router still holds (`held`): a session it let go
    is detached by Crossbar a reactor turn later."""

    def __init__(self, router, realm: str, *, size: int = 1000, idle_seconds: float = 60.0) -> None:
        from crossbar.router.session import RouterApplicationSession  # the router worker's own

        self._attach = RouterApplicationSession
        self._router, self._realm = router, realm
        self._size, self._idle = size, idle_seconds
        self._sessions: OrderedDict[tuple[str, str], PublisherSession] = OrderedDict()
        self._made: set[PublisherSession] = set()  # until the router no longer holds them
        # Through the patch guard: checked already by the worker's hardening (memoized per process).
        guard_this_process(Logger().warn).apply("publisher-decisions", install_decision_hook, router, PublisherSession)

    def __len__(self) -> int:
        return len(self._sessions)

    def session(self, authid: str, authrole: str) -> PublisherSession:
        key = (authid, authrole)
        session = self._sessions.get(key)
        if session is None or session.gone or not session.is_attached():
            session = PublisherSession(self._realm, authid, authrole)
            # Joins at once (an embedded session's HELLO is handled within the constructor).
            self._attach(session, self._router, authid=authid, authrole=authrole, authextra=dict(AUTHEXTRA))
            self._sessions[key] = session
            if len(self._made) > 2 * len(self._sessions) + 100:
                self._forget_detached()  # bounded without a scrape (amortized)
            self._made.add(session)
            while len(self._sessions) > self._size:
                _, oldest = self._sessions.popitem(last=False)
                _leave(oldest)
        self._sessions.move_to_end(key)
        session.last_used = time.monotonic()
        return session

    def held(self, authrole: str) -> int:
        """How many of these sessions with `authrole` the router holds now, as Crossbar's session
        count sees them: those in the pool, and those let go that it has not detached yet."""
        self._forget_detached()
        return sum(1 for session in self._made if session.identity[1] == authrole)

    def _forget_detached(self) -> None:
        self._made = {session for session in self._made if self._router.is_attached(session)}

    def close_idle(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        idle = [key for key, s in self._sessions.items() if s.gone or now - s.last_used >= self._idle]
        for key in idle:
            _leave(self._sessions.pop(key))
        return len(idle)

    def close(self) -> None:
        while self._sessions:
            _leave(self._sessions.popitem()[1])


def _leave(session: PublisherSession) -> None:
    if not session.gone and session.is_attached():
        session.leave("wamp.close.normal", "idle")
