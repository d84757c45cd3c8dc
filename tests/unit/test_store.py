"""The token store on its own: the circuit breaker in front of it (injected clock, a fake store),
SQLite's purging and file modes, Redis's timeouts and its revocation listener."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time

import pytest

from authenticator.config.settings import ConfigError, StoreSpec, load_settings
from authenticator.core.reasons import Reason
from authenticator.server import store as store_module
from authenticator.server.store import GuardedStore, RedisStore, SqliteStore, StoreUnavailable, covers, open_store
from tests.support.redis_server import RedisServer
from tests.support.router import REPO
from tests.support.stalling_proxy import StallingProxy
from tests.support.tokens import TEST_SECRET, unique

NOW = 1_800_000_000.0
JTI = "jti-that-must-never-be-shown"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """Answers, or raises StoreUnavailable while `down`; counts the calls that reached it."""

    revocations_in_memory = False

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.entered = threading.Event()  # set when a call is inside the store
        self.release: threading.Event | None = None  # when set: calls wait for it (a hanging store)

    def _answer(self):
        self.calls += 1
        self.entered.set()
        if self.release is not None:
            self.release.wait(10)
        if self.down:
            raise StoreUnavailable("fake token store: TimeoutError")
        return None

    def admit(self, **kwargs):
        return self._answer()

    def revoke(self, **kwargs):
        return self._answer()

    def revoked(self, **kwargs):
        return None

    def close(self) -> None:
        pass


def admit(store):
    return store.admit(authid="alice", jti=JTI, issued_at=NOW, expires_at=NOW + 60, single_use=True, now=NOW)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake():
    return FakeStore()


@pytest.fixture
def guarded(fake, clock):
    return GuardedStore(fake, clock=clock, retry_seconds=2.0)


def test_a_store_that_answers_is_asked_every_time(guarded, fake):
    assert admit(guarded) is None
    assert admit(guarded) is None
    assert fake.calls == 2
    assert not guarded.known_down


def test_once_the_store_failed_it_is_known_down_and_refused_at_once_without_asking_it(guarded, fake, clock):
    fake.down = True
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    assert guarded.known_down
    clock.now += 1.5
    for call in (admit, lambda s: s.revoke(authid="bob", jti=JTI, now=NOW, keep_seconds=None)):
        with pytest.raises(StoreUnavailable) as refused:
            call(guarded)
        assert "is down" in str(refused.value) and "next try in 0.5 s" in str(refused.value)
        assert JTI not in str(refused.value) and "alice" not in str(refused.value)
    assert fake.calls == 1  # only the call that found it down


def test_after_the_retry_time_one_call_tries_the_store_again_and_a_success_marks_it_up(guarded, fake, clock):
    fake.down = True
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    clock.now += 2.0
    assert not guarded.known_down  # time to try again: the next call goes through (half-open)
    fake.down = False
    assert admit(guarded) is None
    assert fake.calls == 2 and not guarded.known_down
    assert admit(guarded) is None and fake.calls == 3


def test_a_retry_that_fails_keeps_it_down_for_another_retry_interval(guarded, fake, clock):
    fake.down = True
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    clock.now += 2.0
    with pytest.raises(StoreUnavailable) as tried:
        admit(guarded)
    assert "TimeoutError" in str(tried.value)  # the store's own answer: it was really asked
    assert fake.calls == 2 and guarded.known_down
    clock.now += 1.9
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    assert fake.calls == 2


def test_while_one_retry_is_in_flight_every_other_call_is_refused_at_once(guarded, fake, clock):
    fake.down = True
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    clock.now += 2.0
    fake.entered.clear()
    fake.release = threading.Event()
    outcome: list = []

    def probe():
        try:
            outcome.append(admit(guarded))
        except StoreUnavailable as error:
            outcome.append(error)

    prober = threading.Thread(target=probe)
    prober.start()
    assert fake.entered.wait(5), "the retry never reached the store"
    assert guarded.known_down  # the component refuses on the reactor, without a thread hop
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    assert time.monotonic() - started < 0.5
    assert fake.calls == 2
    fake.down = False
    fake.release.set()
    prober.join(5)
    assert outcome == [None] and not guarded.known_down


def test_an_unexpected_error_in_a_retry_does_not_leave_the_store_refused_for_ever(guarded, fake, clock):
    fake.down = True
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    clock.now += 2.0
    fake.admit = lambda **kwargs: 1 / 0
    with pytest.raises(ZeroDivisionError):
        admit(guarded)
    del fake.admit
    fake.down = False
    assert admit(guarded) is None


def test_memory_checks_and_other_attributes_pass_through_even_when_down(guarded, fake):
    fake.down = True
    with pytest.raises(StoreUnavailable):
        admit(guarded)
    assert guarded.revoked(authid="alice", jti=None, issued_at=NOW, now=NOW) is None
    assert guarded.revocations_in_memory is False
    fake.path = "somewhere"
    assert guarded.path == "somewhere"
    assert not hasattr(guarded, "listen_for_revocations")  # SQLite has none: the component checks


def test_open_store_guards_the_store_and_hands_it_the_timeout_and_the_leeway(tmp_path):
    opened = open_store(StoreSpec(sqlite_path=tmp_path / "tokens.sqlite", timeout_seconds=0.5), leeway_seconds=7)
    try:
        assert isinstance(opened, GuardedStore) and not opened.known_down
        assert opened.revocations_in_memory is True
        assert (opened.timeout_seconds, opened.leeway_seconds) == (0.5, 7)
        assert opened.admit(authid="a", jti="j", issued_at=NOW, expires_at=NOW + 60, single_use=True, now=NOW) is None
    finally:
        opened.close()


# -- a revocation by authid covers the claim leeway (both stores) ---------------------------------

LEEWAY = 10.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def skewed_store(request, tmp_path):
    """A store that knows the verifier's leeway (10 s), each kind."""
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "tokens.sqlite", leeway_seconds=LEEWAY)
    else:
        store = RedisStore(request.getfixturevalue("redis_url"), leeway_seconds=LEEWAY)
    yield store
    store.close()


def verdicts(store, authid: str, issued_at: float | None, now: float) -> set:
    """What the store answers for a reusable token, every way it can be asked: SQLite from memory
    (the login hot path) and through admit; Redis through admit."""
    answers = {store.admit(authid=authid, jti=None, issued_at=issued_at, expires_at=None, single_use=False, now=now)}
    if store.revocations_in_memory:
        answers.add(store.revoked(authid=authid, jti=None, issued_at=issued_at, now=now))
    return answers


@pytest.mark.parametrize("ahead", [-60, 0, 8, 10])
def test_a_revocation_covers_a_token_whose_iat_is_up_to_the_leeway_after_it(skewed_store, ahead):
    """Finding 6 of issue 20: an issuer whose clock runs 8 s fast mints a token just before the
    revocation; its iat is 8 s after the router's time of the revocation, and the verifier accepts
    it (iat up to the leeway ahead). The revocation must still cover it."""
    bob = unique("bob")
    skewed_store.revoke(authid=bob, jti=None, now=NOW, keep_seconds=None)
    assert verdicts(skewed_store, bob, NOW + ahead, now=NOW + 1) == {Reason.REVOKED}


def test_a_token_issued_after_the_revocation_and_its_leeway_is_accepted(skewed_store):
    bob = unique("bob")
    skewed_store.revoke(authid=bob, jti=None, now=NOW, keep_seconds=None)
    assert verdicts(skewed_store, bob, NOW + LEEWAY + 0.5, now=NOW + 1) == {None}
    assert verdicts(skewed_store, bob, None, now=NOW + 1) == {Reason.REVOKED}  # no iat: cannot prove it is newer
    assert verdicts(skewed_store, unique("carol"), NOW, now=NOW + 1) == {None}  # another user


def test_the_leeway_is_applied_when_a_token_is_checked_also_after_reopening(tmp_path):
    path = tmp_path / "tokens.sqlite"
    SqliteStore(path, leeway_seconds=LEEWAY).revoke(authid="bob", jti=None, now=NOW, keep_seconds=None)
    reopened = SqliteStore(path, leeway_seconds=LEEWAY)
    try:
        assert verdicts(reopened, "bob", NOW + 8, now=NOW + 1) == {Reason.REVOKED}
        assert verdicts(reopened, "bob", NOW + 11, now=NOW + 2) == {None}
    finally:
        reopened.close()


def test_the_rule_is_the_same_for_both_stores():
    assert covers(NOW, NOW + LEEWAY, LEEWAY) and not covers(NOW, NOW + LEEWAY + 0.001, LEEWAY)
    assert covers(NOW, None, LEEWAY) and covers(NOW, NOW - 3600, 0.0)


# -- configuration -------------------------------------------------------------------------------


@pytest.fixture
def extra(monkeypatch):
    from authenticator.config.node_config import component_extra

    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    return component_extra(REPO / ".crossbar" / "config.json")


def test_the_store_timeout_defaults_to_one_second_and_can_be_set(extra, tmp_path):
    assert load_settings(extra, tmp_path).store.timeout_seconds == 1.0
    redis = {"redis_url": "redis://127.0.0.1:6379/0", "timeout_seconds": 0.25}
    spec = load_settings({**extra, "store": redis}, tmp_path).store
    assert (spec.redis_url, spec.timeout_seconds) == ("redis://127.0.0.1:6379/0", 0.25)
    assert load_settings({**extra, "store": {"timeout_seconds": 10}}, tmp_path).store.timeout_seconds == 10.0


@pytest.mark.parametrize("value", [0, 0.05, 11, -1, "1", True, None, float("nan")])
def test_a_bad_store_timeout_is_refused_with_its_name(extra, tmp_path, value):
    with pytest.raises(ConfigError) as refused:
        load_settings({**extra, "store": {"sqlite": "tokens.sqlite", "timeout_seconds": value}}, tmp_path)
    assert "'store.timeout_seconds' must be a number of seconds from 0.1 to 10" in str(refused.value)


# -- SQLite --------------------------------------------------------------------------------------


def rows(path, table) -> list:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608 - test's own table names


def test_expired_revocations_are_purged_from_the_file_and_from_memory_at_open(tmp_path):
    path = tmp_path / "tokens.sqlite"
    store = SqliteStore(path, clock=lambda: NOW)
    store.revoke(authid="bob", jti="jti-bob", now=NOW, keep_seconds=10)
    store.revoke(authid="carol", jti="jti-carol", now=NOW, keep_seconds=None)  # kept for ever
    store.revoke(authid="dave", jti=None, now=NOW, keep_seconds=60)
    store.close()
    reopened = SqliteStore(path, clock=lambda: NOW + 11)
    try:
        assert sorted(rows(path, "revoked_authid")) == ["carol", "dave"]
        assert rows(path, "revoked_jti") == ["jti-carol"]
        assert sorted(reopened._revoked_authids) == ["carol", "dave"]
        assert sorted(reopened._revoked_jtis) == ["jti-carol"]
    finally:
        reopened.close()


def test_expired_revocations_are_purged_on_each_revoke(tmp_path):
    path = tmp_path / "tokens.sqlite"
    store = SqliteStore(path, clock=lambda: NOW)
    try:
        store.revoke(authid="bob", jti="jti-bob", now=NOW, keep_seconds=10)
        store.revoke(authid="erin", jti=None, now=NOW + 11, keep_seconds=10)
        assert rows(path, "revoked_authid") == ["erin"] and rows(path, "revoked_jti") == []
        assert list(store._revoked_authids) == ["erin"] and store._revoked_jtis == {}
    finally:
        store.close()


def test_expired_revocations_are_purged_every_so_many_single_use_logins(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "PURGE_EVERY", 2)
    path = tmp_path / "tokens.sqlite"
    store = SqliteStore(path, clock=lambda: NOW)
    try:
        store.revoke(authid="bob", jti="jti-bob", now=NOW, keep_seconds=10)
        for jti in ("one", "two"):
            store.admit(authid="alice", jti=jti, issued_at=NOW, expires_at=NOW + 60, single_use=True, now=NOW + 11)
        assert rows(path, "revoked_authid") == [] and rows(path, "revoked_jti") == []
        assert store._revoked_authids == {} and store._revoked_jtis == {}
    finally:
        store.close()


def test_a_revocation_still_in_force_is_kept_and_still_refuses(tmp_path):
    store = SqliteStore(tmp_path / "tokens.sqlite", clock=lambda: NOW)
    try:
        store.revoke(authid="bob", jti=None, now=NOW, keep_seconds=10)
        store.revoke(authid="erin", jti=None, now=NOW + 5, keep_seconds=10)
        assert store.revoked(authid="bob", jti=None, issued_at=NOW - 1, now=NOW + 6) is not None
    finally:
        store.close()


def test_the_database_and_its_wal_and_shm_files_are_private_even_under_a_permissive_umask(tmp_path):
    path = tmp_path / "tokens.sqlite"
    previous = os.umask(0o022)
    try:
        store = SqliteStore(path)
        try:
            store.revoke(authid="bob", jti="jti-bob", now=time.time(), keep_seconds=60)
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        finally:
            store.close()
    finally:
        os.umask(previous)
    assert modes == {f.name: 0o600 for f in files}


def test_a_sqlite_call_waits_for_another_at_most_the_timeout(tmp_path):
    store = SqliteStore(tmp_path / "tokens.sqlite", timeout_seconds=0.2)
    try:
        with store._lock:  # another I/O thread's call that does not end (a stuck disk)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as refused:
                admit(store)
            assert time.monotonic() - started < 0.6
        assert "busy for more than 0.2 s" in str(refused.value) and JTI not in str(refused.value)
        assert admit(store) is None
    finally:
        store.close()


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def hung_redis():
    """A port that accepts connections and never answers (its target is never reached)."""
    proxy = StallingProxy(target_port=1)
    proxy.stall()
    yield f"redis://127.0.0.1:{proxy.port}/0"
    proxy.close()


def test_a_redis_that_never_answers_is_given_up_on_after_the_timeout(hung_redis):
    store = RedisStore(hung_redis, timeout_seconds=0.3)
    try:
        for call in (admit, lambda s: s.revoke(authid="bob", jti=JTI, now=NOW, keep_seconds=60)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as refused:
                call(store)
            seconds = time.monotonic() - started
            assert 0.25 < seconds < 0.9, f"took {seconds:.2f} s with a 0.3 s timeout"
            assert "TimeoutError" in str(refused.value) and JTI not in str(refused.value)
    finally:
        store.close()


class FlakyReader:
    """A Redis connection for the revocation listener: the first read raises `error`, then one entry."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.reads = 0
        self.disconnects = 0
        self.connection_pool = self

    def disconnect(self) -> None:
        self.disconnects += 1

    def exists(self, name):
        return 1

    def xinfo_stream(self, name):
        return {"last-generated-id": b"1-0"}

    def xread(self, streams, block=None):
        self.reads += 1
        if self.reads == 1:
            raise self.error
        if self.reads == 2:
            return [(b"stream", [(b"2-0", {b"authid": b"bob", b"jti": b"", b"origin": b"elsewhere"})])]
        time.sleep(0.01)  # an empty blocking read
        return []


@pytest.mark.parametrize("error", [ValueError("parser choked on secret-ish bytes"), RuntimeError("boom")])
def test_the_revocation_listener_survives_any_error_reconnects_and_reads_on(monkeypatch, error):
    monkeypatch.setattr(store_module, "RECONNECT_SECONDS", 0.01)
    store = RedisStore("redis://127.0.0.1:1/0", timeout_seconds=0.3)
    reader = FlakyReader(error)
    monkeypatch.setattr(store, "_redis_factory", lambda **kwargs: reader)
    heard, problems, got = [], [], threading.Event()

    def on_revocation(authid, jti):
        heard.append((authid, jti))
        got.set()

    stop = store.listen_for_revocations(on_revocation, problems.append)
    try:
        assert got.wait(5), f"no revocation heard after the error; problems: {problems}"
    finally:
        stop.set()
    assert heard == [("bob", None)]
    assert problems == [f"Redis revocation stream at redis://127.0.0.1:1/0: {type(error).__name__}; retrying"]
    assert reader.disconnects >= 1  # a connection in an unknown state is not read from again


# -- revocations only widen (both stores) ---------------------------------------------------------


def test_a_later_revocation_with_an_earlier_time_does_not_undo_the_first(skewed_store):
    """Two routers whose clocks differ, or two revoke calls finishing out of order: the second
    revocation of bob carries an earlier time than the first. Tokens the first covered stay refused."""
    bob = unique("bob")
    skewed_store.revoke(authid=bob, jti=None, now=NOW, keep_seconds=None)
    skewed_store.revoke(authid=bob, jti=None, now=NOW - 30, keep_seconds=None)
    assert verdicts(skewed_store, bob, NOW + 5, now=NOW + 1) == {Reason.REVOKED}


def test_a_later_revocation_with_a_shorter_keep_does_not_shorten_the_first(skewed_store):
    bob, jti = unique("bob"), unique("jti")
    skewed_store.revoke(authid=bob, jti=jti, now=NOW, keep_seconds=None)  # for ever
    skewed_store.revoke(authid=bob, jti=jti, now=NOW, keep_seconds=1)
    later = NOW + 3600
    assert verdicts(skewed_store, bob, NOW, now=later) == {Reason.REVOKED}
    answer = skewed_store.admit(authid=unique("x"), jti=jti, issued_at=later, expires_at=None, single_use=False,
                                now=later)  # fmt: skip
    assert answer == Reason.REVOKED
    if isinstance(skewed_store, RedisStore):  # the keys were not given an expiry by the shorter ask
        p = skewed_store.PREFIX
        assert skewed_store._redis.ttl(f"{p}revoked:authid:{bob}") == -1
        assert skewed_store._redis.ttl(f"{p}revoked:jti:{jti}") == -1


def test_revocations_that_only_widen_are_what_a_reopened_file_reads(tmp_path):
    path = tmp_path / "tokens.sqlite"
    store = SqliteStore(path, leeway_seconds=LEEWAY)
    store.revoke(authid="bob", jti=None, now=NOW, keep_seconds=3600)
    store.revoke(authid="bob", jti=None, now=NOW - 30, keep_seconds=60)
    store.close()
    reopened = SqliteStore(path, leeway_seconds=LEEWAY)
    try:
        assert verdicts(reopened, "bob", NOW + 5, now=NOW + 1800) == {Reason.REVOKED}
    finally:
        reopened.close()


# -- the Redis URL in messages and log lines -------------------------------------------------------


@pytest.mark.parametrize("url", ["unix:///nonexistent/redis.sock?db=0&password=s3cret",
                                 "redis://:s3cret@127.0.0.1:1/0?password=s3cret"])  # fmt: skip
def test_a_redis_password_in_the_url_is_never_in_the_store_unavailable_message(url):
    """The message is what the authenticator logs (and the router's refusal reason names the store):
    a password in the userinfo or in the query string (the documented form for unix://) stays out."""
    store = RedisStore(url, timeout_seconds=0.3)
    with pytest.raises(StoreUnavailable) as refused:
        store.admit(authid="bob", jti=None, issued_at=0, expires_at=None, single_use=False, now=0)
    message = str(refused.value)
    assert "s3cret" not in message and "password" not in message, message
    assert message.startswith(f"Redis token store at {url.split('?')[0].replace(':s3cret@', '')}: "), message
