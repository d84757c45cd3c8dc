"""Review of issue 22's server side (recovery): each test was a finding that failed on 444c19d/235f821
(committed as strict xfail in b19b865) and passes since the fixes of 931767b; kept as regressions:
a proxy takes no position from a client's EVENT frame, a payload-mode publication on a history
topic is refused, reads of fresh topics evict no stream holding events, a static-role service's
publications are kept with Redis, a hung Redis refuses later appends at once with one log line."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from types import SimpleNamespace

import txaio

from authenticator.core.settings import HistorySettings

txaio.use_twisted()  # Autobahn's serializers need a framework chosen before they are imported

import pytest  # noqa: E402
import pytest_twisted  # noqa: E402
from autobahn.wamp import message  # noqa: E402
from autobahn.wamp.serializer import JsonSerializer  # noqa: E402

from authenticator.core.history import MemoryHistory, Position  # noqa: E402
from authenticator.core.policy import load_policy  # noqa: E402
from authenticator.patches import event_positions  # noqa: E402
from authenticator.patches.event_positions import HistoryTap, install_event_details, position_of  # noqa: E402

POLICY = {"roles": [{"name": "user", "rules": [
    {"uri": "app.chat.", "match": "prefix", "allow": {"subscribe": True, "publish": True},
     "disclose": {"publisher": True}, "history": {"size": 100, "ttl_seconds": 600}},
]}]}  # fmt: skip


@pytest.fixture
def event_class_restored():
    """install_event_details patches autobahn's Event for the whole process: undo it after."""
    saved = {name: message.Event.__dict__.get(name) for name in
             ("marshal", "parse", "_crossbar_jwt_positions", "_crossbar_jwt_passthrough")}  # fmt: skip
    positions = dict(event_positions._positions)
    yield
    for name, value in saved.items():
        if value is None:
            if name in message.Event.__dict__:
                delattr(message.Event, name)
        else:
            setattr(message.Event, name, value)
    event_positions._positions.clear()
    event_positions._positions.update(positions)


# -- 1. proxy passthrough: a client's own EVENT frame writes the proxy's position table ---------


def test_an_event_frame_sent_by_a_client_to_a_proxy_gives_no_position_to_anyones_event(event_class_restored):
    install_event_details(passthrough=True)  # what harden_proxy_worker installs in proxy workers
    # A client (not yet joined: the proxy's frontend unserializes every frame before its session
    # looks at the message type) sends an EVENT of its own making.
    forged = [message.Event.MESSAGE_TYPE, 111, 4242, {"x_position": {"offset": 999, "epoch": "forged"}}]
    JsonSerializer().unserialize(json.dumps(forged).encode(), False)
    # The router worker's EVENT of publication 4242 for another client of this proxy, arriving
    # without a position (a router-link relay with Redis, or past KEEP_POSITIONS), is marshalled
    # for that client with the forged one.
    wire = message.Event(111, 4242, args=["hello"]).marshal()
    assert position_of(4242) is None
    assert "x_position" not in wire[3]


# -- 2. payload-mode (E2E / payload transparency) publications are kept empty -------------------


class Session:
    _authid, _authrole, _session_id = "alice", "user", 1


def tap_recording(kept: list, kept_elsewhere=lambda session: False) -> HistoryTap:
    def keep(topic, args, kwargs, publisher):
        kept.append((topic, args, kwargs, publisher))
        return {"offset": len(kept), "epoch": "e"}

    return HistoryTap(keep, lambda topic: topic.startswith("app.chat."), kept_elsewhere)


def test_a_payload_mode_publication_on_a_history_topic_is_refused_or_kept_whole():
    # what the router worker parses from a JSON client's 5-element PUBLISH ending in a binary
    # string (WAMP JSON: "\u0000" + base64): payload mode, the broker skips validation and sends
    # the payload on in each EVENT
    frame = [message.Publish.MESSAGE_TYPE, 1, {"acknowledge": True, "enc_algo": "cryptobox"}, "app.chat.room",
             "\u0000" + base64.b64encode(b"opaque").decode()]  # fmt: skip
    (publish,) = JsonSerializer().unserialize(json.dumps(frame).encode(), False)
    assert publish.payload == b"opaque" and publish.args is None
    kept: list = []
    answer = tap_recording(kept).authorized(publish, Session(), {"allow": True, "disclose": True, "cache": False})
    refused = not answer.get("allow")
    kept_whole = bool(kept) and "opaque" in repr(kept[0])
    assert refused or kept_whole, f"kept {kept!r} while subscribers are sent the payload 'opaque'"


# -- 3. reads create streams: any subscriber can push every real stream out -------------------


def test_reading_fresh_topics_does_not_evict_a_stream_that_holds_events():
    store = MemoryHistory(max_streams=3, clock=time.monotonic)
    mine = store.append("app.chat.real", ["missed"], {}, None, size=100, ttl_seconds=600)
    seen = Position(0, mine.epoch)  # a client saw the stream before the event and went away
    for n in range(3):  # a reader walks fresh topics (100,000 with the shipped MEMORY_MAX_TOPICS)
        store.read(f"app.chat.fresh{n}", None, 1, size=100, ttl_seconds=600)
    answer = store.read("app.chat.real", seen, 100, size=100, ttl_seconds=600)
    assert answer.recovered and [e.args for _, e in answer.events] == [("missed",)]


# -- 4. with Redis, 'kept elsewhere' is decided by the role, not by the link ------------------


def history_with_redis(redis_url: str, timeout: float = 5.0, log=None):
    from authenticator.server.history import History

    settings = SimpleNamespace(
        policy=load_policy(POLICY, anonymous_role=None),
        limits=SimpleNamespace(max_uri_length=2048),
        store=SimpleNamespace(redis_url=redis_url, timeout_seconds=timeout),
        history=HistorySettings(),
        claims=SimpleNamespace(realm="realm1", node_realms=("realm1",)),
    )
    return History(settings, authorizer=None, token_roles=lambda caller: (), log=log)


def test_with_redis_a_static_role_publishing_itself_is_kept_only_link_relays_are_not():
    history = history_with_redis("redis://127.0.0.1:1/0")  # never connected here
    kept: list = []
    history.tap._keep = lambda topic, args, kwargs, publisher: kept.append(topic) or {"offset": 1, "epoch": "e"}

    class Service:  # a backend service logged in with a static role of .crossbar/config.json
        _authid, _authrole, _session_id = "billing", "service", 7

    publish = message.Publish(1, "app.chat.room", args=["from the service"])  # no forward_for: not relayed
    history.tap.authorized(publish, Service(), {"allow": True, "disclose": True, "cache": False})
    assert kept == ["app.chat.room"]


# -- 5. a Redis that hangs: appends wait in line, one timeout after the other ------------------


class BlackHole:
    """A TCP listener that accepts and never answers (a hung Redis, a dropped route)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                pass

    def close(self) -> None:
        self.stop = True
        for conn in self.held:
            conn.close()
        self.sock.close()


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, text, **kw):
        self.lines.append(text.format(**kw))

    info = debug = error = warn


@pytest_twisted.ensureDeferred
async def test_a_hung_redis_refuses_later_appends_at_once_not_one_timeout_after_the_other():
    from twisted.internet.defer import DeferredList

    hole, log = BlackHole(), Log()
    history = history_with_redis(f"redis://127.0.0.1:{hole.port}/0", timeout=0.25, log=log)
    history._writer.start()  # (History.start also adds a shutdown trigger)
    try:
        started = time.monotonic()
        done: list[float] = []

        def settled(result):
            done.append(time.monotonic() - started)

        appends = [history.keep("app.chat.room", [n], {}, "alice") for n in range(8)]
        for d in appends:
            d.addBoth(settled)
        await DeferredList(appends, consumeErrors=True)
        slowest = max(done)
        # every one is refused (Redis is hung), but the last should not wait for the seven before it
        lines = len(log.lines)
        assert slowest < 4 * 0.25, f"the last of 8 appends was refused after {slowest:.2f} s ({lines} warn lines)"
        assert len(log.lines) <= 2, log.lines
    finally:
        history._writer.stop()
        hole.close()


@pytest_twisted.ensureDeferred
async def test_with_redis_hung_history_reads_do_not_hold_the_shared_io_threads_one_timeout_each():
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList, ensureDeferred
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    hole, log = BlackHole(), Log()
    io = ThreadPool(minthreads=4, maxthreads=4, name="review-io")  # the component's IO_THREADS
    io.start()
    history = history_with_redis(f"redis://127.0.0.1:{hole.port}/0", timeout=0.25, log=log)
    history._reader.start()  # (History.start also adds a shutdown trigger)
    history._authorizer = SimpleNamespace(decide=lambda **kw: SimpleNamespace(allow=True, reason=""))
    caller = SimpleNamespace(caller=1, caller_authid="alice", caller_authrole="user")
    try:
        reads = [ensureDeferred(history.read(f"app.chat.r{n}", details=caller)) for n in range(16)]
        started = time.monotonic()
        login_check = deferToThreadPool(reactor, io, lambda: time.monotonic() - started)  # a store call
        waited = await login_check
        await DeferredList(reads, consumeErrors=True)
        lines = len(log.lines)
        assert waited < 0.5, f"a store call queued behind 16 history reads waited {waited:.2f} s ({lines} warn lines)"
        assert lines <= 2, log.lines
    finally:
        io.stop()
        history._reader.stop()
        hole.close()
