"""The demo's document shares: the admin shares a document channel with one user for a while, and
the demo issuer mints that user a *grant token* for it (Mercure's model: the token carries what it
may read). Pure: the clock is injected; the issuer (authenticator/demo/issuer.py) serves it.

A share is (document id, user, end). It names one topic, ``app.doc.<id>``; the grant token the
issuer mints for it carries the user's authid, the one role ``GRANT_ROLE`` (never the user's own
roles) and ``caps`` naming exactly that topic, and it lives as long as a login token (the issuer's
``token_ttl_seconds``), never past the share's end. The page refreshes the session with a new grant
token while the share lasts; once it has ended the issuer mints none, and the router ends the
session at the last token's ``exp`` (docs/authorization.md, "Demo: sharing a document"). The book
holds at most ``max_shares`` live shares (memory of the router worker, which hosts the issuer);
ended ones are dropped as the book is used.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DOC_TOPIC_PREFIX = "app.doc."
# The only role a grant token carries. The shipped policy gives it nothing but a grantable rule on
# app.doc. (subscribe) and authenticator.refresh: a grant token that leaked, or a page that misused
# its session, reaches the one document its caps name and nothing of its user's rights (chat,
# notifications, an admin's revoke). Carrying the user's roles instead would make it a login token.
GRANT_ROLE = "document-reader"
# A document id is one URI component: lower-case letters, digits, "_" and "-", at most 32.
DOC_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SEND_SHARE = 'Send {"doc": "42", "user": "alice", "seconds": 300} as JSON.'


class ShareRefused(Exception):
    """A share request the issuer answers with `status` and this message (what to do included)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, with status 429


@dataclass(frozen=True)
class Share:
    doc: str
    user: str
    by: str
    exp: int  # the share's end, seconds since the epoch: no grant token for it outlives it

    @property
    def topic(self) -> str:
        return DOC_TOPIC_PREFIX + self.doc

    def caps(self) -> list[dict]:
        """The grant a token for this share carries: the document's topic, to subscribe, nothing more."""
        return [{"uri": self.topic, "match": "exact", "allow": ["subscribe"]}]

    def grant_exp(self, ttl: int, now: float) -> int | None:
        """The exp of a grant token for this share minted at `now`: `ttl` seconds away (the issuer's
        token_ttl_seconds, as a login token), never past the share's end; None once it has ended."""
        exp = min(int(now) + ttl, self.exp)
        return exp if exp > now else None

    def as_json(self) -> dict:
        return {"doc": self.doc, "user": self.user, "by": self.by, "topic": self.topic, "exp": self.exp}


def read_share_request(body: Mapping, users: Mapping, min_seconds: int, max_seconds: int) -> tuple[str, str, int]:
    """(doc, user, seconds) of a share request's JSON object, or ShareRefused(400) saying what to send."""
    doc, user, seconds = body.get("doc"), body.get("user"), body.get("seconds")
    if not isinstance(doc, str) or not DOC_ID.fullmatch(doc):
        raise ShareRefused(400, "'doc' must be a document id of 1 to 32 characters: lower-case letters, digits, "
                                f"'_' and '-' (topic {DOC_TOPIC_PREFIX}<doc>). {SEND_SHARE}")  # fmt: skip
    if not isinstance(user, str) or user not in users:
        raise ShareRefused(400, "'user' must name a demo user (alice, bob, root: the README lists them). " + SEND_SHARE)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not min_seconds <= seconds <= max_seconds:
        raise ShareRefused(400, f"'seconds' must be a whole number from {min_seconds} to {max_seconds} "
                                f"(issuer.share_min_seconds, issuer.share_max_seconds). {SEND_SHARE}")  # fmt: skip
    return doc, user, seconds


class ShareBook:
    """The live shares, at most `max_shares`. Sharing a document again with the same user replaces
    its end. Thread-safe: Crossbar runs the issuer on a thread pool."""

    def __init__(self, max_shares: int, clock: Callable[[], float] = time.time) -> None:
        self.max_shares = max_shares
        self.clock = clock
        self._shares: dict[tuple[str, str], Share] = {}  # (doc, user) -> share
        self._lock = threading.Lock()

    def add(self, doc: str, user: str, by: str, seconds: int) -> Share:
        now = self.clock()
        with self._lock:
            self._drop_ended(now)
            if (doc, user) not in self._shares and len(self._shares) >= self.max_shares:
                wait = max(1, math.ceil(min(share.exp for share in self._shares.values()) - now))
                raise ShareRefused(429, f"{self.max_shares} shares are live, the most the demo issuer keeps "
                                        f"(issuer.max_shares). Try again in {wait} s, when the first one ends.",
                                   retry_after=wait)  # fmt: skip
            share = Share(doc=doc, user=user, by=by, exp=int(now) + seconds)
            self._shares[(doc, user)] = share
            return share

    def live_for(self, user: str) -> list[Share]:
        """The live shares with `user`, the soonest to end first."""
        now = self.clock()
        with self._lock:
            self._drop_ended(now)
            return sorted((s for s in self._shares.values() if s.user == user), key=lambda s: (s.exp, s.doc))

    def find(self, doc: str, user: str) -> Share | None:
        """The live share of `doc` with `user`, or None (never shared, or ended)."""
        now = self.clock()
        with self._lock:
            self._drop_ended(now)
            return self._shares.get((doc, user))

    def _drop_ended(self, now: float) -> None:
        for key in [key for key, share in self._shares.items() if share.exp <= now]:
            del self._shares[key]
