"""Idempotency keys of POST /publish, the pure part: what a key may be, what it is bound to, and the
per-process store that remembers the first answer.

A backend that did not get an answer (the connection dropped, a 503, a timeout) cannot know
whether its publication went out. It sends the same key again with the same publication; the
router answers with the first answer (the same publication id) and does not publish twice.

- A key is scoped by the publisher's authid: one user's key never answers, blocks or reveals
  another user's publication (the scope is a digest of both).
- A key is bound to the publication it first came with (a digest of topic, args, kwargs and
  options: `fingerprint`): the same key with another publication is refused, never answered with
  the first one's id (Stripe's semantics: a key names one request).
- Only a publication is remembered (a 200 and its id), for the window. A refusal (400, 403, the
  broker's 500) releases the key: nothing went out, and the corrected retry may use it.
- While a request holds the key (reserved, publishing), the same key is answered "in progress":
  a duplicate that arrives meanwhile never publishes a second time.

The Redis store (authenticator/server/redis_idempotency.py) keeps the same contract for every
router of a deployment; this module's MemoryIdempotency is one process's (the SQLite store's
deployments: one router worker).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

MAX_KEY_LENGTH = 128
# Visible ASCII only: no space, no control character, nothing a log line or a terminal would read
# as anything but the key. A UUID, a ULID, "order-4711-shipped" all fit.
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
DEFAULT_WINDOW_SECONDS = 86_400
DEFAULT_MAX_KEYS = 100_000
# How long a reservation holds a key without an answer before it is free again: a router that
# died while publishing must not block the key for the whole window. Longer than the publication's
# own bound (publisher_pool.PUBLISH_TIMEOUT_SECONDS, 10 s) plus the store's round trips.
PENDING_SECONDS = 30.0
KEY_HEADER = "Idempotency-Key"
KEY_FIELD = "idempotency_key"


class KeysUnavailable(Exception):
    """The store of keys cannot be reached (Redis); the message names the store, never a key."""


class KeyProblem(ValueError):
    """An idempotency key that is not one; the message says what to send (never the key itself)."""


def checked_key(value: object, where: str) -> str:
    """The key, if it is 1 to MAX_KEY_LENGTH visible ASCII characters; KeyProblem otherwise. The
    answer describes a bad key (its length, the position of a bad character), never quotes it."""
    if not isinstance(value, str):
        raise KeyProblem(f"{where} must be a string: 1 to {MAX_KEY_LENGTH} visible ASCII characters, such as a UUID.")
    if _KEY.fullmatch(value):
        return value
    if not value:
        problem = "it is empty"
    elif len(value) > MAX_KEY_LENGTH:
        problem = f"it has {len(value)} characters"
    else:
        position = next(i for i, c in enumerate(value) if not "\x21" <= c <= "\x7e")
        problem = f"character {position + 1} is not visible ASCII (a space, a control character or non-ASCII)"
    raise KeyProblem(
        f"{where} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (no spaces), such as a UUID: {problem}."
    )


def scope(authid: str, key: str) -> bytes:
    """The stored name of (authid, key): a digest, so that what the store holds is bounded and one
    authid's key never meets another's. The authid is length-prefixed: ("a:b", "c") and ("a", "b:c")
    differ."""
    return hashlib.sha256(f"{len(authid)}:{authid}:{key}".encode("utf-8", "surrogatepass")).digest()


def fingerprint(topic: str, args: list, kwargs: dict, options: dict) -> bytes:
    """What a key is bound to: the publication as parsed (key order and spacing of the body do not
    matter; a different topic, payload or option does)."""
    canonical = json.dumps([topic, args, kwargs, options], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()


class State(Enum):
    RESERVED = "reserved"  # this request holds the key: publish, then settle (a publication) or release
    DONE = "done"  # published within the window: answer with publication_id, publish nothing
    IN_PROGRESS = "in_progress"  # another request holds the key for this publication: retry shortly
    OTHER_PUBLICATION = "other_publication"  # the key was given with another publication: refused
    FULL = "full"  # the memory store holds only keys in flight, at its bound: retry shortly


@dataclass(frozen=True)
class Claim:
    state: State
    owner: str | None = None  # RESERVED: the token that settles or releases it
    publication_id: int | None = None  # DONE


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    until: float
    owner: str | None  # set while reserved
    publication_id: int | None = None  # set once published


class MemoryIdempotency:
    """One process's keys, at most `max_keys`, each kept `window_seconds` after its publication.

    At the bound, the key remembered longest is forgotten first (its window cut short: a retry with
    it after that publishes again), counted in `forgotten`; keys in flight are never forgotten,
    and when every kept key is in flight a new one is refused (FULL: the caller answers 503). Plain
    dict operations: called on the reactor, no I/O, no lock.
    """

    blocking = False  # called where it is, not on an I/O thread

    def __init__(
        self, *, window_seconds: float = DEFAULT_WINDOW_SECONDS, max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic, pending_seconds: float = PENDING_SECONDS,
    ) -> None:  # fmt: skip
        self.window_seconds, self.max_keys = window_seconds, max_keys
        self._clock, self._pending = clock, pending_seconds
        # Oldest first: a key moves to the end when it is reserved and when it is settled.
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._owners = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._entries)

    def reserve(self, requests: Iterable[tuple[bytes, bytes]]) -> list[Claim]:
        return [self._reserve(name, bound_to) for name, bound_to in requests]

    def settle(self, published: Iterable[tuple[bytes, str, int]]) -> None:
        now = self._clock()
        for name, owner, publication_id in published:
            entry = self._entries.get(name)
            if entry is not None and entry.owner == owner:
                entry.owner, entry.publication_id, entry.until = None, publication_id, now + self.window_seconds
                self._entries.move_to_end(name)

    def release(self, refused: Iterable[tuple[bytes, str]]) -> None:
        for name, owner in refused:
            entry = self._entries.get(name)
            if entry is not None and entry.owner == owner:
                del self._entries[name]

    def _reserve(self, name: bytes, bound_to: bytes) -> Claim:
        now = self._clock()
        self._drop_expired(now)
        entry = self._entries.get(name)
        if entry is not None and entry.until > now:
            if entry.fingerprint != bound_to:
                return Claim(State.OTHER_PUBLICATION)
            if entry.owner is not None:
                return Claim(State.IN_PROGRESS)
            return Claim(State.DONE, publication_id=entry.publication_id)
        if entry is None and len(self._entries) >= self.max_keys and not self._forget_one():
            return Claim(State.FULL)
        self._owners += 1
        owner = f"m{self._owners}"
        self._entries[name] = _Entry(bound_to, now + self._pending, owner)
        self._entries.move_to_end(name)
        return Claim(State.RESERVED, owner=owner)

    def _drop_expired(self, now: float) -> None:
        """Expired keys at the front (amortized: each entry is dropped once). A reservation whose
        request never settled (it cannot happen in one process but is not relied on) expires too."""
        while self._entries:
            name, entry = next(iter(self._entries.items()))
            if entry.until > now:
                return
            del self._entries[name]

    def _forget_one(self) -> bool:
        for name, entry in self._entries.items():
            if entry.owner is None:
                del self._entries[name]
                self.forgotten += 1
                return True
        return False
