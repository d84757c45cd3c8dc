"""HttpPublishing with idempotency keys, on the paths a real router does not produce on demand: a
store of keys that cannot be reached, one that fails after the publication, and where a blocking
(Redis) store is called: on the I/O threads, never on the reactor."""

import threading

import pytest
import pytest_twisted
from twisted.internet.defer import maybeDeferred, succeed
from twisted.python.threadpool import ThreadPool

from authenticator.core.idempotency import KeysUnavailable, MemoryIdempotency
from authenticator.core.settings import PublishSettings
from authenticator.endpoints import metrics
from authenticator.endpoints.publish import HttpPublishing
from tests.component.test_http_publishing_service import Admits, Allows, Log

BODY = b'{"topic": "app.public.news", "args": [1]}'


class Settings:
    publish = PublishSettings()

    class limits:  # noqa: N801 - a stand-in for Settings.limits
        max_uri_length = 512


class Pool:
    """Publishes at once, counting."""

    def __init__(self):
        self.published = []

    def session(self, authid, role):
        return self

    def publish_decided(self, topic, args, kwargs, options, answer):
        self.published.append((topic, args))
        return succeed(1000 + len(self.published))


class BlockingKeys(MemoryIdempotency):
    """The memory store's answers, called as a blocking (Redis) store: records the threads it ran on;
    `fail` names the operations that raise KeysUnavailable."""

    blocking = True

    def __init__(self, fail=()):
        super().__init__()
        self.fail, self.threads = set(fail), []

    def _call(self, name, method, argument):
        self.threads.append(threading.current_thread())
        if name in self.fail:
            raise KeysUnavailable("Redis idempotency store at 127.0.0.1:1: ConnectionError")
        return method(argument)

    def reserve(self, requests):
        return self._call("reserve", super().reserve, requests)

    def settle(self, published):
        return self._call("settle", super().settle, published)


def service(keys, io_pool):
    publishing = HttpPublishing.__new__(HttpPublishing)  # no router: the pool is a stand-in
    publishing.realm, publishing._admission, publishing._authorizer = "realm1", Admits(), Allows()
    publishing._settings, publishing._log, publishing.pool = Settings, Log(), Pool()
    publishing.keys, publishing._keys_io, publishing.key_calls_waiting = keys, io_pool, 0
    publishing._forgotten_logged = 0
    publishing._published_count = metrics.HTTP_PUBLISHES.labels("realm1", "published", "none")
    return publishing


@pytest.fixture
def io_pool():
    pool = ThreadPool(minthreads=1, maxthreads=2, name="test-io")
    pool.start()
    yield pool
    pool.stop()


@pytest_twisted.ensureDeferred
async def test_a_blocking_store_of_keys_is_called_on_the_io_threads_never_on_the_reactor(io_pool):
    keys = BlockingKeys()
    publishing = service(keys, io_pool)
    first = await maybeDeferred(publishing.handle, "eyJ.a.b", BODY, "127.0.0.1:1", 100, [b"k1"])
    again = await maybeDeferred(publishing.handle, "eyJ.a.b", BODY, "127.0.0.1:1", 100, [b"k1"])
    assert first.body == again.body == {"id": 1001} and again.headers == {"Idempotent-Replayed": "true"}
    assert publishing.pool.published == [("app.public.news", [1])]
    assert len(keys.threads) == 3  # reserve, settle, reserve
    assert all(thread is not threading.main_thread() for thread in keys.threads), keys.threads
    assert publishing.key_calls_waiting == 0


@pytest_twisted.ensureDeferred
async def test_a_store_of_keys_that_cannot_be_reached_is_503_retry_and_nothing_is_published(io_pool):
    publishing = service(BlockingKeys(fail={"reserve"}), io_pool)
    answer = await maybeDeferred(publishing.handle, "eyJ.a.b", BODY, "127.0.0.1:1", 100, [b"k1"])
    assert answer.status == 503 and answer.headers == {"Retry-After": "1"}
    assert answer.body["error"] == "authenticator.error.store_unavailable"
    assert "nothing was published" in answer.body["message"] and "127.0.0.1:1" not in answer.body["message"]
    assert publishing.pool.published == []
    # a batch too: refused whole, before anything of it was published
    batch = b'[{"topic": "app.a"}, {"topic": "app.b", "idempotency_key": "k2"}]'
    answer = await maybeDeferred(publishing.handle, "eyJ.a.b", batch, "127.0.0.1:1", 100)
    assert answer.status == 503 and publishing.pool.published == []


@pytest_twisted.ensureDeferred
async def test_a_store_that_fails_after_the_publication_still_answers_its_id(io_pool):
    publishing = service(BlockingKeys(fail={"settle"}), io_pool)
    answer = await maybeDeferred(publishing.handle, "eyJ.a.b", BODY, "127.0.0.1:1", 100, [b"k1"])
    assert (answer.status, answer.body) == (200, {"id": 1001})
    assert publishing._log.lines == ["http publish: could not update idempotency keys (KeysUnavailable); they expire "
                                     "in 30 s"]  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_past_the_bound_of_waiting_calls_a_keyed_request_is_503_at_once(io_pool):
    publishing = service(BlockingKeys(), io_pool)
    publishing.key_calls_waiting = 1000
    answer = await maybeDeferred(publishing.handle, "eyJ.a.b", BODY, "127.0.0.1:1", 100, [b"k1"])
    assert answer.status == 503 and publishing.pool.published == []


def test_a_blocking_store_is_refused_without_io_threads():
    with pytest.raises(ValueError, match="never on the reactor"):
        HttpPublishing("realm1", None, None, None, Settings, Log(), keys=BlockingKeys(), io_pool=None)


def test_a_full_memory_store_is_503_retry_and_a_forgotten_key_is_logged_once_per_thousand():
    keys = MemoryIdempotency(max_keys=1)
    publishing = service(keys, None)
    keys.reserve([(b"in-flight", b"f")])  # the one key it may hold, in flight
    answer = fired(publishing.handle("eyJ.a.b", BODY, "127.0.0.1:1", 100, [b"k1"]))
    assert answer.status == 503 and answer.headers == {"Retry-After": "1"}
    assert publishing.pool.published == []
    keys.release([(b"in-flight", "m1")])
    for n in range(3):
        publishing.handle("eyJ.a.b", BODY.replace(b"[1]", b"[%d]" % n), "127.0.0.1:1", 100, [b"k%d" % n])
    forgotten = [line for line in publishing._log.lines if "forgotten" in line]
    assert forgotten == ["http publish: 1 idempotency keys forgotten before their window ended: this router holds "
                         "at most 1 (publish.idempotency_max_keys)"]  # fmt: skip
    assert keys.forgotten == 2


def fired(result):
    """The answer of a Deferred that has fired already (the memory store answers at once)."""
    outcome = []
    maybeDeferred(lambda: result).addBoth(outcome.append)
    assert outcome, "the answer did not come at once"
    return outcome[0]
