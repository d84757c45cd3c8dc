"""The live sessions this authenticator admitted: what their token allows and until when.

Plain data; the component attaches its timer to each entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tokens import Identity


@dataclass
class LiveSession:
    session_id: int | str  # the router's session id (a login key until bound, behind proxies)
    authid: str
    roles: frozenset[str]
    jti: str | None
    issued_at: float | None
    deadline: float | None  # when the router ends it: the token's exp plus the grace
    timer: Any = field(default=None, repr=False)


class LiveSessions:
    def __init__(self) -> None:
        self._by_id: dict[int, LiveSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, session_id: int | str, identity: Identity, grace: float) -> LiveSession:
        live = LiveSession(
            session_id=session_id,
            authid=identity.authid,
            roles=frozenset(identity.roles),
            jti=identity.jti,
            issued_at=identity.issued_at,
            deadline=None if identity.expires_at is None else identity.expires_at + grace,
        )
        self._by_id[session_id] = live
        return live

    def get(self, session_id: int | None) -> LiveSession | None:
        return self._by_id.get(session_id) if session_id is not None else None

    def pop(self, session_id: int) -> LiveSession | None:
        return self._by_id.pop(session_id, None)

    def rekey(self, old_id, new_id: int) -> LiveSession | None:
        """Behind proxies: move an entry from its login key to the router's session id."""
        live = self._by_id.pop(old_id, None)
        if live is not None:
            live.session_id = new_id
            self._by_id[new_id] = live
        return live

    def covered_by(self, *, authid: str | None, jti: str | None) -> list[LiveSession]:
        """The sessions a revocation of authid (all its tokens so far) or of one jti ends."""
        return [
            s for s in self._by_id.values() if (authid is not None and s.authid == authid) or (jti and s.jti == jti)
        ]
