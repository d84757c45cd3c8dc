"""Presence: who holds an exact subscription to a topic, and when an authid joins or leaves it.

Pure: no Twisted, no I/O. The router (authenticator/server/presence.py) feeds it the broker's
subscription changes; this module decides the join/leave events and the answer of
``authenticator.presence``. An authid *joins* a topic when its first session subscribes to it
(exact match) and *leaves* when its last session unsubscribes or ends; a second session of the same
authid changes the session count only. Prefix and wildcard subscribers are not members: the
authorizer sees their pattern, never the topics it reaches, so nobody could be allowed to see them
without seeing more than one topic.

A member is a (topic, session) pair; a session is any hashable key (the router's session id here,
"node:session" in Redis).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from authenticator.contract import PRESENCE_TOPIC_PREFIX

# The longest list of authids one answer carries (the count is always whole): the answer of a
# topic with a million members stays a bounded message. Sorted, the first MAX_AUTHIDS are given.
MAX_AUTHIDS = 1000
JOIN, LEAVE = "join", "leave"


@dataclass(frozen=True)
class Change:
    """A join or leave event to publish on PRESENCE_TOPIC_PREFIX + topic."""

    event: str  # JOIN or LEAVE
    topic: str
    authid: str

    def as_kwargs(self) -> dict:
        return {"event": self.event, "authid": self.authid}


def answer(members: Iterable[tuple[Hashable, str]], limit: int = MAX_AUTHIDS) -> dict:
    """The answer of ``authenticator.presence`` from (session, authid) pairs of one topic: distinct
    authids sorted (at most `limit`, `truncated` says whether some were left out), the number of
    distinct authids (`users`) and of sessions (`sessions`)."""
    sessions = 0
    authids: set[str] = set()
    for _, authid in members:
        sessions += 1
        authids.add(authid)
    shown = sorted(authids) if len(authids) <= limit else heapq.nsmallest(limit, authids)
    return {"authids": shown, "users": len(authids), "sessions": sessions, "truncated": len(authids) > limit}


class PresenceTable:
    """Members per topic on one router, with the join/leave decisions."""

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, set[Hashable]]] = {}  # topic -> authid -> sessions
        self._sessions: dict[Hashable, dict[str, str]] = {}  # session -> topic -> authid

    def subscribed(self, topic: str, session: Hashable, authid: str) -> Change | None:
        """A session holds an exact subscription to topic; JOIN if it is its authid's first."""
        held = self._sessions.setdefault(session, {})
        if topic in held:
            return None  # already a member (the broker never says so twice; a replay changes nothing)
        held[topic] = authid
        by_authid = self._topics.setdefault(topic, {})
        sessions = by_authid.setdefault(authid, set())
        sessions.add(session)
        return Change(JOIN, topic, authid) if len(sessions) == 1 else None

    def unsubscribed(self, topic: str, session: Hashable) -> Change | None:
        """The session's subscription to topic ended; LEAVE if it was its authid's last."""
        held = self._sessions.get(session)
        if held is None or topic not in held:
            return None
        authid = held.pop(topic)
        if not held:
            del self._sessions[session]
        by_authid = self._topics[topic]
        sessions = by_authid[authid]
        sessions.discard(session)
        if sessions:
            return None
        del by_authid[authid]
        if not by_authid:
            del self._topics[topic]
        return Change(LEAVE, topic, authid)

    def left(self, session: Hashable) -> list[Change]:
        """The session ended (left, killed, lost): a LEAVE for every topic it was its authid's last on."""
        changes = [self.unsubscribed(topic, session) for topic in self.topics_of(session)]
        return [change for change in changes if change is not None]

    def holds(self, session: Hashable, topic: str) -> bool:
        return topic in self._sessions.get(session, ())

    def topics_of(self, session: Hashable) -> list[str]:
        return list(self._sessions.get(session, ()))

    def members(self, topic: str) -> list[tuple[Hashable, str]]:
        """(session, authid) of every member of topic."""
        return [(s, authid) for authid, sessions in self._topics.get(topic, {}).items() for s in sessions]

    def answer(self, topic: str, limit: int = MAX_AUTHIDS) -> dict:
        by_authid = self._topics.get(topic, {})
        shown = sorted(by_authid) if len(by_authid) <= limit else heapq.nsmallest(limit, by_authid)
        return {
            "authids": shown,
            "users": len(by_authid),
            "sessions": sum(len(s) for s in by_authid.values()),
            "truncated": len(by_authid) > limit,
        }

    def entries(self) -> list[tuple[str, Hashable, str]]:
        """(topic, session, authid) of every member: what a router refreshes in a shared store."""
        return [(topic, s, authid) for s, held in self._sessions.items() for topic, authid in held.items()]

    def __len__(self) -> int:
        return sum(len(held) for held in self._sessions.values())


# -- the join/leave events' topics ----------------------------------------------------------------


def events_topic(uri: object) -> str | None:
    """T for the events topic PRESENCE_TOPIC_PREFIX + T, else None."""
    if isinstance(uri, str) and uri.startswith(PRESENCE_TOPIC_PREFIX):
        return uri[len(PRESENCE_TOPIC_PREFIX) :]
    return None


def events_problem(action: str, uri: object, match: str) -> str | None:
    """Why a client's request on the presence events is refused before any rule is consulted, or
    None. The events of topic T are subscribed to exactly (then decided as `presence` on T): a
    pattern would reach the events of topics nobody checked, and no rule is asked about them."""
    if not isinstance(uri, str):
        return None
    if action == "publish" and uri.startswith(PRESENCE_TOPIC_PREFIX):
        return f"only the router publishes on {PRESENCE_TOPIC_PREFIX}*"
    if action != "subscribe":
        return None
    if match == "exact":
        if uri == PRESENCE_TOPIC_PREFIX:
            return f"subscribe to {PRESENCE_TOPIC_PREFIX}<topic> for the presence events of one topic"
        return None
    if _pattern_reaches_events(uri, match):
        return (
            f"presence events are subscribed to one topic at a time: an exact subscription to "
            f"{PRESENCE_TOPIC_PREFIX}<topic>, not a {match} subscription that reaches {PRESENCE_TOPIC_PREFIX}*"
        )
    return None


def _pattern_reaches_events(uri: str, match: str) -> bool:
    if match == "prefix":
        return uri.startswith(PRESENCE_TOPIC_PREFIX) or PRESENCE_TOPIC_PREFIX.startswith(uri)
    head = PRESENCE_TOPIC_PREFIX.rstrip(".").split(".")
    parts = uri.split(".")
    # a wildcard pattern has a fixed length; an empty component stands for any one component
    return len(parts) > len(head) and all(p in ("", h) for p, h in zip(parts, head, strict=False))
