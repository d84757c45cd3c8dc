"""The live-session keeper: ends the sessions this authenticator admitted when their token expires
or is revoked, and knows which token roles each one holds.

It owns the table (authenticator/core/live_sessions.py) and one timer per session; the component feeds it
logins, the router's join and leave events, refreshes and revocations, and gives it `kill` (the
call of ``wamp.session.kill``). The clock is injected: tests drive it with twisted's task.Clock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from twisted.internet import reactor, task

from authenticator.contract import AUTHEXTRA_LOGIN_KEY
from authenticator.core.live_sessions import LiveSession, LiveSessions
from authenticator.core.policy import Grant
from authenticator.core.reasons import Reason
from authenticator.core.tokens import Identity
from authenticator.endpoints import metrics

# Behind proxies: the authextra key that links a login to the router session it becomes.
LOGIN_KEY = AUTHEXTRA_LOGIN_KEY
EXPIRED_MESSAGE = "the session's token expired; fetch a fresh token and reconnect"
REVOKED_MESSAGE = "access for this user or token has been revoked"


class SessionKeeper:
    def __init__(
        self,
        *,
        grace_seconds: float,
        join_timeout_seconds: float,
        behind_proxies: bool,
        kill: Callable[[int, Reason, str], object],
        log,
        clock=reactor,
        wall_clock: Callable[[], float] = time.time,
        realm: str = metrics.NO_REALM,
    ) -> None:
        self.table = LiveSessions()
        self._realm = realm  # the metrics' realm label
        self._grace = grace_seconds
        self._join_timeout = join_timeout_seconds
        self._behind_proxies = behind_proxies
        self._kill = kill
        self._log = log
        self._clock = clock
        self._wall_clock = wall_clock
        self._sweep = task.LoopingCall(self._drop_unjoined)
        self._sweep.clock = clock

    def start(self) -> None:
        self._sweep.start(self._join_timeout, now=False)

    def stop(self) -> None:
        if self._sweep.running:
            self._sweep.stop()

    # -- what the component tells it ------------------------------------------------------------

    def admitted(self, identity: Identity, pending_session_id: int | None) -> dict:
        """A login the authenticator accepts; returns the authextra for its WELCOME. Behind proxies
        the pending session id is the proxy's, not the router's: the login is keyed by a random
        login key the session carries in its authextra until the router announces it."""
        extra = identity.authextra()
        if identity.expires_at is not None:
            # On the router's clock: a client whose clock is off from the issuer's by minutes times
            # its refresh from this, not from exp.
            extra["expires_in"] = round(identity.expires_at - self._wall_clock(), 3)
        if self._behind_proxies or pending_session_id is None:
            key = extra[LOGIN_KEY] = f"login-{secrets.token_hex(8)}"
        else:
            key = pending_session_id
        live = self.table.add(key, identity, self._grace, now=self._clock.seconds())
        self._never_before_grace(live)
        self._schedule_expiry(live)
        return extra

    def joined(self, details) -> None:
        """wamp.session.on_join: the router announces a session."""
        if not isinstance(details, dict):
            return
        session_id = details.get("session")
        key = (details.get("authextra") or {}).get(LOGIN_KEY) if self._behind_proxies else session_id
        live = self.table.join(key, session_id) if key is not None else None
        if live is None:
            if self._behind_proxies and isinstance(key, str) and isinstance(session_id, int):
                # A token login we no longer hold (its client took longer than the join timeout):
                # left running it would have no expiry and no revocation could reach it.
                self._log.warn("session ended: reason=expired (joined after its login was dropped) session={sid}",
                               sid=session_id)  # fmt: skip
                metrics.SESSIONS_ENDED.labels(self._realm, Reason.EXPIRED.code).inc()
                self._kill(session_id, Reason.EXPIRED, EXPIRED_MESSAGE)
            return
        if live.revoked:
            self._log.warn("session ended: reason=revoked (revoked while it was joining) authid={authid} "
                           "session={sid}", authid=live.authid, sid=session_id)  # fmt: skip
            self._end(live, Reason.REVOKED, REVOKED_MESSAGE)
        elif live.expired:
            self._log.info("session ended: reason=expired (expired while it was joining) authid={authid} "
                           "session={sid}", authid=live.authid, sid=session_id)  # fmt: skip
            self._end(live, Reason.EXPIRED, EXPIRED_MESSAGE)

    def left(self, session_id) -> None:
        """wamp.session.on_leave."""
        self._forget(session_id)

    def refreshed(self, live: LiveSession, identity: Identity) -> None:
        live.jti, live.issued_at = identity.jti, identity.issued_at
        if identity.expires_at is not None:
            live.deadline = identity.expires_at + self._grace
            self._never_before_grace(live)
            self._schedule_expiry(live)

    def revoke(self, authid: str | None, jti: str | None) -> list[LiveSession]:
        """End the joined sessions a revocation covers; logins still joining are ended when they join."""
        ended = []
        for live in self.table.covered_by(authid=authid, jti=jti):
            if live.joined:
                self._end(live, Reason.REVOKED, REVOKED_MESSAGE)
                ended.append(live)
            else:
                live.revoked = True
        return ended

    # -- what the component asks it -----------------------------------------------------------

    def session(self, session_id) -> LiveSession | None:
        """A joined session this authenticator admitted."""
        return self.table.get(session_id)

    def token_roles(self, session: dict) -> frozenset[str]:
        """The roles of the token a session logged in with, from our own table -- never from what
        the session's authextra says (an anonymous or proxied session's authextra can carry what
        the client sent). A session not in the table (anonymous, static) has none beyond its role.
        Behind proxies a session may act before its join event reached us: then its login key,
        unguessable, finds the pending login."""
        live = self._acting(session)
        return frozenset() if live is None else live.roles

    def grants(self, session: dict) -> tuple[Grant, ...]:
        """What the token a session logged in with granted (its caps claim), found as its roles are:
        from our table by the session id (or the login key), never from what the session says. Gone
        with the session: a new session has what its own token grants."""
        live = self._acting(session)
        return () if live is None else live.grants

    def _acting(self, session: dict) -> LiveSession | None:
        live = self.table.find(session.get("session"))
        if live is None and self._behind_proxies:
            key = (session.get("authextra") or {}).get(LOGIN_KEY)
            live = self.table.find(key) if isinstance(key, str) else None
        if live is None or live.revoked or live.expired:  # to be ended at its join: grants nothing more
            return None
        return live

    # -- timers and kills ---------------------------------------------------------------------

    def _never_before_grace(self, live: LiveSession) -> None:
        """A token accepted within the claim leeway after its exp would otherwise be ended in the
        same breath it was admitted (the client sees a dropped connection, not a reason). It gets
        the grace from now instead: time to notice and refresh, then GOODBYE `expired`."""
        if live.deadline is not None:
            live.deadline = max(live.deadline, self._wall_clock() + self._grace)

    def _schedule_expiry(self, live: LiveSession) -> None:
        if live.deadline is None:
            return
        delay = max(0.0, live.deadline - self._wall_clock())
        if live.timer is not None and live.timer.active():
            live.timer.reset(delay)
        else:
            live.timer = self._clock.callLater(delay, self._expired, live)

    def _expired(self, live: LiveSession) -> None:
        session_id = live.session_id  # read when it fires: behind proxies it is bound at join
        if not live.joined:
            # Kept, not dropped: a join announced later must find it and end it (the sweep drops
            # it if its client went away before joining).
            live.expired = True
        elif self.table.get(session_id) is live:
            self._log.info("session ended: reason=expired authid={authid} session={sid}", authid=live.authid,
                           sid=session_id)  # fmt: skip
            self._end(live, Reason.EXPIRED, EXPIRED_MESSAGE)

    def _end(self, live: LiveSession, reason: Reason, message: str) -> None:
        self._forget(live.session_id)
        metrics.SESSIONS_ENDED.labels(self._realm, reason.code).inc()
        self._kill(live.session_id, reason, message)

    def _forget(self, session_id) -> None:
        live = self.table.pop(session_id)
        if live is not None and live.timer is not None and live.timer.active():
            live.timer.cancel()

    def _drop_unjoined(self) -> None:
        dropped = self.table.drop_unjoined(admitted_before=self._clock.seconds() - self._join_timeout)
        for live in dropped:
            if live.timer is not None and live.timer.active():
                live.timer.cancel()
        if dropped:
            self._log.info("authenticator: dropped {n} login(s) that never joined", n=len(dropped))
