"""The sessions this authenticator admitted: what their token allows, until when, and whether they
joined. Plain data; the component attaches its timer to each entry.

A login is *pending* from the moment the authenticator accepts it until the router announces the
session (``wamp.session.on_join``). A client may close before it joins: such a login never gets an
``on_leave`` either, so pending entries are dropped after a bounded time instead of living (and
being counted as live sessions) until their token expires. A revocation that covers a pending
login cannot end a session that does not exist yet: it marks the entry, and the session is ended
the moment it joins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authenticator.core.policy import Grant
from authenticator.core.tokens import Identity


@dataclass
class LiveSession:
    session_id: int | str  # the router's session id (behind proxies: a login key until it joins)
    authid: str
    roles: frozenset[str]
    jti: str | None
    issued_at: float | None
    deadline: float | None  # when the router ends it: the token's exp plus the grace
    admitted_at: float = 0.0  # monotonic clock, for dropping logins that never join
    joined: bool = False
    revoked: bool = False  # revoked while pending: ended as soon as it joins
    expired: bool = False  # its deadline passed while pending: ended as soon as it joins
    timer: Any = field(default=None, repr=False)
    # What its token granted (the caps claim): fixed for the session's life, as its roles are (a
    # refresh with other grants is refused); gone with the session.
    grants: tuple[Grant, ...] = ()


class LiveSessions:
    def __init__(self) -> None:
        self._by_id: dict[int | str, LiveSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, key: int | str, identity: Identity, grace: float, now: float = 0.0) -> LiveSession:
        live = LiveSession(
            session_id=key,
            authid=identity.authid,
            roles=frozenset(identity.roles),
            grants=identity.grants,
            jti=identity.jti,
            issued_at=identity.issued_at,
            deadline=None if identity.expires_at is None else identity.expires_at + grace,
            admitted_at=now,
        )
        self._by_id[key] = live
        return live

    def get(self, session_id: int | None) -> LiveSession | None:
        """A joined session (refresh is for sessions, not for logins still on their way)."""
        live = self._by_id.get(session_id) if session_id is not None else None
        return live if live is not None and live.joined else None

    def find(self, key: int | str | None) -> LiveSession | None:
        """A joined session or a pending login."""
        return self._by_id.get(key) if key is not None else None

    def pop(self, session_id: int | str) -> LiveSession | None:
        return self._by_id.pop(session_id, None)

    def join(self, key: int | str, session_id: int) -> LiveSession | None:
        """The router announced the session of a pending login (keyed by its session id, or behind
        proxies by its login key, which is replaced by the router's session id)."""
        live = self._by_id.get(key)
        if live is None or live.joined:
            return None
        if key != session_id:
            del self._by_id[key]
            live.session_id = session_id
            self._by_id[session_id] = live
        live.joined = True
        return live

    def covered_by(self, *, authid: str | None, jti: str | None) -> list[LiveSession]:
        """The sessions and pending logins a revocation of authid (all its tokens so far) or of one
        jti covers."""
        return [
            s for s in self._by_id.values() if (authid is not None and s.authid == authid) or (jti and s.jti == jti)
        ]

    def drop_unjoined(self, admitted_before: float) -> list[LiveSession]:
        """Pending logins admitted before the given time: their clients went away before joining."""
        stale = [s for s in self._by_id.values() if not s.joined and s.admitted_at < admitted_before]
        for live in stale:
            del self._by_id[live.session_id]
        return stale
