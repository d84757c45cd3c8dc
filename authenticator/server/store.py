"""Replay and revocation state: SQLite in the node directory by default, Redis for several routers.

Synchronous and Twisted-free; the component calls it on its own I/O threads, never on the
reactor. A revocation of an authid at the router's time T covers every token of it whose `iat`
is at most T + the claim leeway (`covers`): the verifier accepts an `iat` up to the leeway ahead
of the router's clock, so a token minted before the revocation by an issuer whose clock runs
fast carries an `iat` after T.

Any failure to reach the state raises StoreUnavailable, which refuses the login: an unchecked
token is never accepted. Every call is bounded by the store's timeout, and open_store puts a
circuit breaker (GuardedStore) in front: once the store has failed, calls are refused at once
instead of each waiting out its own timeout, until a retry finds it answering again.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from authenticator.core import redis_url
from authenticator.core.reasons import Reason
from authenticator.core.settings import StoreSpec

PURGE_EVERY = 500  # logins between purges of expired single-use entries
RECONNECT_SECONDS = 1.0  # between attempts to reach Redis for revocation announcements
BLOCK_SECONDS = 5.0  # one blocking read of the revocation stream
RETRY_SECONDS = 1.0  # how long a store that failed is refused at once before one call tries it again


class StoreUnavailable(Exception):
    """The state cannot be read or written; the message names the store, never a token."""


class TokenStore(Protocol):
    # True when every revocation this store will ever see goes through this process (SQLite: one
    # node), so revocations can be answered from memory without I/O; False when other routers
    # write to it (Redis).
    revocations_in_memory: bool

    def revoked(self, *, authid: str, jti: str | None, issued_at: float | None, now: float) -> Reason | None:
        """REVOKED from memory (only when revocations_in_memory), else None."""

    def admit(
        self, *, authid: str, jti: str | None, issued_at: float | None, expires_at: float | None,
        single_use: bool, now: float,
    ) -> Reason | None:  # fmt: skip
        """REVOKED or REPLAYED when the token may not be used, else None (and it is now used)."""

    def revoke(self, *, authid: str | None, jti: str | None, now: float, keep_seconds: float | None) -> None:
        """Refuse from now on: every token of authid issued up to now plus the leeway (`covers`), and
        the token jti."""

    def close(self) -> None: ...


def open_store(spec: StoreSpec, *, leeway_seconds: float, namespace: str = "") -> GuardedStore:
    """The configured store behind its circuit breaker; `leeway_seconds` is the claim leeway the
    verifier allows (claims.leeway_seconds), which every revocation by authid covers; `namespace`:
    the realm's part of every Redis key (core/redis_url.realm_namespace)."""
    if spec.redis_url:
        return GuardedStore(
            RedisStore(
                spec.redis_url, timeout_seconds=spec.timeout_seconds, leeway_seconds=leeway_seconds, namespace=namespace
            )  # fmt: skip
        )
    assert spec.sqlite_path is not None
    return GuardedStore(
        SqliteStore(spec.sqlite_path, timeout_seconds=spec.timeout_seconds, leeway_seconds=leeway_seconds)
    )


def covers(revoked_at: float, issued_at: float | None, leeway_seconds: float) -> bool:
    """Whether a revocation of an authid at the router's time `revoked_at` covers a token of it.

    The verifier accepts an `iat` up to the leeway ahead of the router's clock (an issuer whose
    clock runs fast), so a token minted before the revocation may carry an `iat` up to
    revoked_at + leeway: all of those are covered. The price: a token minted honestly within the
    leeway after the revocation is refused too; the user's next token must be issued after
    revoked_at + leeway (the revoke answer says when). A token without iat cannot prove it was
    issued after the revocation: covered."""
    return issued_at is None or issued_at <= revoked_at + leeway_seconds


class GuardedStore:
    """A circuit breaker in front of a store.

    Up: every call goes to the store. A call that raises StoreUnavailable marks it down: for
    `retry_seconds` every call is refused at once with StoreUnavailable, without asking the store
    (a store that hangs would otherwise cost each login a full timeout, one after another on the
    I/O threads). Then the next call tries the store for real (only that one: the others are still
    refused while it is in flight); its success marks the store up, its failure down again.

    Failing fast is still failing closed: a refused call refuses the login, never admits it.
    `known_down` reads two attributes and takes no lock, so the component can check it on the
    reactor and refuse a login without even a thread hop. Memory-only checks (`revoked`) and every
    other attribute of the store pass through.
    """

    def __init__(self, store, *, clock: Callable[[], float] = time.monotonic,
                 retry_seconds: float = RETRY_SECONDS) -> None:  # fmt: skip
        self.store = store
        self.revocations_in_memory = store.revocations_in_memory  # an attribute: tests patch it
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._down_until: float | None = None  # None: up
        self._trying = False  # one call is trying a store that was down
        self._cause = ""

    @property
    def known_down(self) -> bool:
        """True while a call would be refused without asking the store."""
        down_until = self._down_until
        return down_until is not None and (self._trying or self._clock() < down_until)

    def admit(self, **kwargs):
        return self._call(self.store.admit, kwargs)

    def revoke(self, **kwargs):
        return self._call(self.store.revoke, kwargs)

    def revoked(self, **kwargs):
        return self.store.revoked(**kwargs)

    def close(self) -> None:
        self.store.close()

    def __getattr__(self, name: str):
        if name == "store":  # not set yet (during __init__, or an object made without it)
            raise AttributeError(name)
        return getattr(self.store, name)

    def _call(self, operation, kwargs: dict):
        trying = False  # this call is the one retry (only it may end the retry)
        with self._lock:
            if self._down_until is not None:
                now = self._clock()
                if self._trying or now < self._down_until:
                    # The cause names the store and the error type; never a token or an argument.
                    wait = max(0.0, self._down_until - now)
                    raise StoreUnavailable(f"{self._cause}; the store is down, next try in {wait:.1f} s")
                self._trying = trying = True
        try:
            result = operation(**kwargs)
        except StoreUnavailable as error:
            with self._lock:
                self._cause = str(error)
                self._down_until = self._clock() + self._retry_seconds
                self._trying = self._trying and not trying
            raise
        except BaseException:
            with self._lock:  # not an answer about the store: the next call tries again
                self._trying = self._trying and not trying
            raise
        with self._lock:
            self._down_until = None
            self._trying = self._trying and not trying
        return result


class SqliteStore:
    """One connection, used by one I/O thread at a time (a lock, waited for at most the timeout).

    Revocations are also kept in memory (loaded at start, updated by revoke): checking a reusable
    token then costs no I/O and no thread hop, which keeps the login hot path on the reactor.
    Revocations whose keep_until has passed cover no token any more: they are purged from the file
    and from memory at open, on each revoke and every PURGE_EVERY single-use logins.
    """

    revocations_in_memory = True

    def __init__(
        self, path: Path, *, timeout_seconds: float = 1.0, clock: Callable[[], float] = time.time,
        leeway_seconds: float = 0.0,
    ) -> None:  # fmt: skip
        self.path = path
        self.timeout_seconds = timeout_seconds
        self.leeway_seconds = leeway_seconds
        self._lock = threading.Lock()
        self._admitted = 0
        # authid -> (revoked_at, keep_until); jti -> keep_until. Written on the I/O threads under
        # the lock, read on the reactor: single dict operations are atomic under the GIL.
        self._revoked_authids: dict[str, tuple[float, float | None]] = {}
        self._revoked_jtis: dict[str, float | None] = {}
        try:
            _create_private(path)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout_seconds)
            self._db.executescript(
                """
                PRAGMA journal_mode = WAL;
                CREATE TABLE IF NOT EXISTS used_jti (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS revoked_authid (
                    authid TEXT PRIMARY KEY, revoked_at REAL NOT NULL, keep_until REAL);
                CREATE TABLE IF NOT EXISTS revoked_jti (jti TEXT PRIMARY KEY, keep_until REAL);
                """
            )
            for authid, revoked_at, keep_until in self._db.execute("SELECT * FROM revoked_authid"):
                self._revoked_authids[authid] = (revoked_at, keep_until)
            self._revoked_jtis.update(self._db.execute("SELECT jti, keep_until FROM revoked_jti"))
            self._purge_revocations(clock())
        except (sqlite3.Error, OSError) as error:
            raise StoreUnavailable(f"cannot open the token store {path}: {error}") from error

    def revoked(self, *, authid, jti, issued_at, now):
        entry = self._revoked_authids.get(authid)
        if entry is not None and (entry[1] is None or entry[1] > now):
            if covers(entry[0], issued_at, self.leeway_seconds):
                return Reason.REVOKED
        # One get, not `in` then `[]`: a purge on an I/O thread may drop the entry in between.
        keep_until = self._revoked_jtis.get(jti, _ABSENT) if jti is not None else _ABSENT
        if keep_until is not _ABSENT and (keep_until is None or keep_until > now):
            return Reason.REVOKED
        return None

    def admit(self, *, authid, jti, issued_at, expires_at, single_use, now):
        try:
            with self._locked():
                return self._admit(authid, jti, issued_at, expires_at, single_use, now)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"token store {self.path}: {error}") from error

    @contextlib.contextmanager
    def _locked(self):
        if not self._lock.acquire(timeout=self.timeout_seconds):
            raise StoreUnavailable(f"token store {self.path}: busy for more than {self.timeout_seconds} s")
        try:
            yield
        finally:
            self._lock.release()

    def _purge_revocations(self, now: float) -> None:
        """Drop revocations that cover no token any more (kept until keep_until): file, then memory."""
        self._db.execute("DELETE FROM revoked_authid WHERE keep_until IS NOT NULL AND keep_until <= ?", (now,))
        self._db.execute("DELETE FROM revoked_jti WHERE keep_until IS NOT NULL AND keep_until <= ?", (now,))
        for authid, (_, keep_until) in list(self._revoked_authids.items()):
            if keep_until is not None and keep_until <= now:
                self._revoked_authids.pop(authid, None)
        for jti, keep_until in list(self._revoked_jtis.items()):
            if keep_until is not None and keep_until <= now:
                self._revoked_jtis.pop(jti, None)

    def _admit(self, authid, jti, issued_at, expires_at, single_use, now):
        verdict = self.revoked(authid=authid, jti=jti, issued_at=issued_at, now=now)
        if verdict is not None:
            return verdict
        if not single_use:
            return None
        self._admitted += 1
        if self._admitted % PURGE_EVERY == 0:
            self._db.execute("DELETE FROM used_jti WHERE expires_at <= ?", (now,))
            self._purge_revocations(now)
        keep_until = expires_at if expires_at is not None else now + 86400
        cursor = self._db.execute(
            "INSERT INTO used_jti (jti, expires_at) VALUES (?, ?) "
            "ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at WHERE used_jti.expires_at <= ?",
            (jti, keep_until, now),
        )
        return None if cursor.rowcount == 1 else Reason.REPLAYED

    def revoke(self, *, authid, jti, now, keep_seconds):
        keep_until = None if keep_seconds is None else now + keep_seconds
        try:
            with self._locked():
                self._purge_revocations(now)
                if authid is not None:
                    self._db.execute(
                        _REVOKE_AUTHID,
                        (authid, now, keep_until),
                    )
                if jti is not None:
                    self._db.execute(
                        _REVOKE_JTI,
                        (jti, keep_until),
                    )
                # Memory follows the file, never leads it: a revocation counts once it is durable.
                if authid is not None:
                    earlier = self._revoked_authids.get(authid)
                    if earlier is None:
                        self._revoked_authids[authid] = (now, keep_until)
                    else:
                        self._revoked_authids[authid] = (max(earlier[0], now), _later(earlier[1], keep_until))
                if jti is not None:
                    earlier_jti = self._revoked_jtis.get(jti, _ABSENT)
                    self._revoked_jtis[jti] = keep_until if earlier_jti is _ABSENT else _later(earlier_jti, keep_until)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"token store {self.path}: {error}") from error

    def close(self) -> None:
        self._db.close()


_ABSENT = object()
# Revocations only ever widen: a second revocation of the same authid or jti that arrives with an
# earlier time (two routers whose clocks differ, two revoke calls finishing out of order on the
# I/O threads) must not shrink what the first one covers or how long it is kept (keep_until None: for ever).
_REVOKE_AUTHID = (
    "INSERT INTO revoked_authid (authid, revoked_at, keep_until) VALUES (?, ?, ?) ON CONFLICT (authid) DO UPDATE SET "
    "revoked_at = max(revoked_authid.revoked_at, excluded.revoked_at), keep_until = CASE WHEN "
    "revoked_authid.keep_until IS NULL OR excluded.keep_until IS NULL THEN NULL "
    "ELSE max(revoked_authid.keep_until, excluded.keep_until) END"
)
_REVOKE_JTI = (
    "INSERT INTO revoked_jti (jti, keep_until) VALUES (?, ?) ON CONFLICT (jti) DO UPDATE SET keep_until = CASE WHEN "
    "revoked_jti.keep_until IS NULL OR excluded.keep_until IS NULL THEN NULL "
    "ELSE max(revoked_jti.keep_until, excluded.keep_until) END"
)


def _later(keep_until: float | None, other: float | None) -> float | None:
    return None if keep_until is None or other is None else max(keep_until, other)


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it: SQLite creates its -wal and -shm files
    with the database file's permissions, and they hold the same data (revoked users, used jtis)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            name.chmod(0o600)  # an older version created them with the umask's permissions


class RedisStore:
    """Shared by every router that names the same Redis: a token used on one is used on all."""

    PREFIX = "crossbar-jwt:"
    # A Redis stream, not pub/sub: a router that lost its connection reads on from the last entry
    # it saw, so no revocation is missed while it reconnects.
    STREAM = PREFIX + "revocations"
    STREAM_MAXLEN = 10_000
    revocations_in_memory = False  # other routers revoke too: ask Redis on every login

    def revoked(self, *, authid, jti, issued_at, now):
        raise NotImplementedError("RedisStore answers revocations through admit, on the I/O thread")

    def __init__(self, url: str, *, timeout_seconds: float = 1.0, leeway_seconds: float = 0.0,
                 namespace: str = "") -> None:  # fmt: skip
        import redis  # only deployments that configure Redis need the client

        # Several realms: each its own keys and stream (one Redis may serve them all).
        self.PREFIX = redis_url.in_namespace(RedisStore.PREFIX, namespace)
        self.STREAM = self.PREFIX + "revocations"
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.RedisError,)
        self.url_shown = redis_url.shown(url)  # never log a password from the URL (userinfo or query)
        self.timeout_seconds = timeout_seconds
        self.leeway_seconds = leeway_seconds

        def connect(socket_timeout: float = timeout_seconds):
            # No retries inside the client: one round trip waits at most the timeout, and the
            # GuardedStore, not the client, decides when a store that failed is tried again.
            return redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=timeout_seconds,
                retry=Retry(NoBackoff(), 0),
            )  # fmt: skip

        self._redis_factory = connect
        self._redis = self._redis_factory()
        self._widen = self._redis.register_script(_WIDEN_REVOCATION)
        # Marks this store's own stream entries: the router that revoked has ended its sessions already.
        self._origin = secrets.token_hex(8)

    def admit(self, *, authid, jti, issued_at, expires_at, single_use, now):
        p = self.PREFIX
        try:
            revoked_at, jti_revoked = self._redis.mget(
                [f"{p}revoked:authid:{authid}", f"{p}revoked:jti:{jti}" if jti else f"{p}-"]
            )
            if revoked_at is not None and covers(float(revoked_at), issued_at, self.leeway_seconds):
                return Reason.REVOKED
            if jti_revoked is not None:
                return Reason.REVOKED
            if not single_use:
                return None
            ttl = max(1, int((expires_at if expires_at is not None else now + 86400) - now) + 1)
            first = self._redis.set(f"{p}used:{jti}", b"1", nx=True, ex=ttl)
            return None if first else Reason.REPLAYED
        except self._errors as error:
            raise StoreUnavailable(f"Redis token store at {self.url_shown}: {type(error).__name__}") from error

    def revoke(self, *, authid, jti, now, keep_seconds):
        ex = None if keep_seconds is None else max(1, math.ceil(keep_seconds))  # never shorter than asked
        try:
            # One atomic script per key: a revocation only ever widens (see _REVOKE_AUTHID).
            if authid is not None:
                self._widen(keys=[f"{self.PREFIX}revoked:authid:{authid}"], args=[repr(now), ex or ""])
            if jti is not None:
                self._widen(keys=[f"{self.PREFIX}revoked:jti:{jti}"], args=["1", ex or ""])
            # Stored first, then announced: a router that misses the announcement (disconnected
            # from Redis) still refuses the token at its next login.
            entry = {"authid": authid or "", "jti": jti or "", "origin": self._origin}
            self._redis.xadd(self.STREAM, entry, maxlen=self.STREAM_MAXLEN, approximate=True)
        except self._errors as error:
            raise StoreUnavailable(f"Redis token store at {self.url_shown}: {type(error).__name__}") from error

    def listen_for_revocations(self, on_revocation, on_problem) -> threading.Event:
        """Call on_revocation(authid, jti) for every revocation any router announces from now on,
        from a daemon thread (the caller hands it to its reactor). After a Redis error it
        reconnects and reads on from the last entry it saw. Set the returned event to stop."""
        stop = threading.Event()
        # Blocking reads need a connection whose socket timeout outlasts the block.
        reader = self._redis_factory(socket_timeout=BLOCK_SECONDS + 2)

        def listen() -> None:
            cursor = {"last_id": "$"}  # only what is revoked after we start: earlier ones are checked at login
            while not stop.is_set():
                try:
                    self._read_revocations(reader, cursor, on_revocation)
                except Exception as error:  # noqa: BLE001 - whatever fails, the listener must live on
                    # The type only: a message could quote what Redis sent. A connection that failed
                    # half-way may hold a partial reply: drop it, the next read reconnects.
                    with contextlib.suppress(Exception):
                        reader.connection_pool.disconnect()
                    with contextlib.suppress(Exception):
                        on_problem(f"Redis revocation stream at {self.url_shown}: {type(error).__name__}; retrying")
                    stop.wait(RECONNECT_SECONDS)

        threading.Thread(target=listen, name="authenticator-revocations", daemon=True).start()
        return stop

    def _read_revocations(self, reader, cursor: dict, on_revocation) -> None:
        """One blocking read of the stream after cursor["last_id"], which follows every entry read
        (kept across failures: after a reconnect the read goes on from there, nothing is missed)."""
        if cursor["last_id"] == "$":
            newest = reader.xinfo_stream(self.STREAM)["last-generated-id"] if reader.exists(self.STREAM) else b"0-0"
            cursor["last_id"] = newest.decode() if isinstance(newest, bytes) else newest
        for _, entries in reader.xread({self.STREAM: cursor["last_id"]}, block=int(BLOCK_SECONDS * 1000)) or []:
            for entry_id, fields in entries:
                # Past this entry before acting on it: an entry that makes on_revocation fail is
                # not read again and again.
                cursor["last_id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                announced = _announcement(fields)
                if announced is not None and fields.get(b"origin") != self._origin.encode():
                    on_revocation(*announced)

    def close(self) -> None:
        self._redis.close()


# KEYS[1]: a revocation key; ARGV[1]: its value (the revocation time, or "1" for a jti); ARGV[2]:
# seconds to keep it, or "" for ever. The larger time wins, and the key is kept as long as the
# longer of the two asks (a key without expiry stays without).
_WIDEN_REVOCATION = """
local current = redis.call('GET', KEYS[1])
local value = ARGV[1]
if current and tonumber(current) and tonumber(value) and tonumber(current) > tonumber(value) then
  value = current
end
if ARGV[2] == '' then
  return redis.call('SET', KEYS[1], value)
end
local ttl = redis.call('TTL', KEYS[1])
if current and (ttl == -1 or ttl >= tonumber(ARGV[2])) then
  return redis.call('SET', KEYS[1], value, 'KEEPTTL')
end
return redis.call('SET', KEYS[1], value, 'EX', ARGV[2])
"""


def _announcement(fields: dict) -> tuple[str | None, str | None] | None:
    """(authid, jti) from a revocation stream entry; None for anything else."""
    try:
        authid, jti = (fields.get(key, b"").decode() or None for key in (b"authid", b"jti"))
    except (AttributeError, UnicodeDecodeError):
        return None
    return None if authid is None and jti is None else (authid, jti)
