"""How many lines the protocol errors of clients write (authenticator/patches/protocol_errors.py): a budget
per window, the rest counted in one summary line per window. Through the router:
tests/router/test_log_injection.py."""

from __future__ import annotations

from types import SimpleNamespace

from authenticator.patches.protocol_errors import Budget, ProtocolErrorLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.calls: list[tuple[float, object]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay, function):
        self.calls.append((self.now + delay, function))
        return object()

    def run_due(self) -> None:
        due = [c for c in self.calls if c[0] <= self.now]
        self.calls = [c for c in self.calls if c[0] > self.now]
        for _, function in due:
            function()


def test_a_budget_gives_burst_lines_per_window_and_counts_the_rest():
    clock = Clock()
    budget = Budget(burst=3, window=10, clock=clock)
    assert [budget.take() for _ in range(5)] == [True, True, True, False, False]
    assert budget.ends_in() == 10 and budget.drain() == 2 and budget.drain() == 0
    clock.now += 10
    assert budget.take() and budget.ends_in() == 10  # a new window starts with the next line


def test_a_flood_gives_burst_lines_and_one_summary_per_window():
    clock = Clock()
    lines = []
    log = ProtocolErrorLog(lambda fmt, **kw: lines.append((fmt, kw)), clock.call_later, Budget(3, 10, clock))
    protocol = SimpleNamespace(peer="tcp4:127.0.0.1:5000", _session=SimpleNamespace(_session_id=7, _authid="a"))
    for _ in range(20):  # 10 faults a second for 20 s
        for _fault in range(10):
            log.fault(protocol, ValueError("x" * 1000))
        clock.now += 1
        clock.run_due()
    faults = [kw for fmt, kw in lines if fmt.startswith("protocol error,")]
    summaries = [kw["more"] for fmt, kw in lines if fmt.startswith("protocol errors:")]
    assert len(faults) == 6 and summaries == [97, 97]  # 2 windows: 3 lines and a summary of 97 each
    assert len(faults) + sum(summaries) == 200
    assert faults[0]["peer"] == "tcp4:127.0.0.1:5000" and faults[0]["authid"] == "a" and faults[0]["session"] == 7
    assert faults[0]["error"].startswith("ValueError: xxx") and len(faults[0]["error"]) < 650


def test_no_summary_when_nothing_was_left_out():
    clock = Clock()
    lines = []
    log = ProtocolErrorLog(lambda fmt, **kw: lines.append(fmt), clock.call_later, Budget(3, 10, clock))
    for _ in range(3):
        log.fault(SimpleNamespace(), ValueError("x"))
    clock.now += 30
    clock.run_due()
    assert len(lines) == 3 and clock.calls == []


class RecordingLog:
    """The class-level logger of a fake protocol (as Autobahn's `log`, which an instance may shadow):
    records into the protocol's `logged`."""

    def __get__(self, protocol, owner):
        def record(level):
            return lambda fmt, **kw: protocol.logged.append((level, fmt.format(**kw)))

        return SimpleNamespace(warn=record("warn"), critical=record("critical"), trace=record("trace"),
                               debug=record("debug"))  # fmt: skip


class FakeProtocol:
    """What the patched onMessage uses of Autobahn's WampWebSocketProtocol: a serializer, a session,
    a logger, _bailout (which, as Autobahn's, logs its warning through self.log)."""

    log = RecordingLog()

    def __init__(self, parse, handle=lambda msg: None) -> None:
        self._serializer = SimpleNamespace(unserialize=lambda payload, is_binary: parse(payload))
        self._session = SimpleNamespace(_session_id=9, _authid="mallory", onMessage=handle)
        self.peer = "tcp4:127.0.0.1:4000"
        self.logged: list[tuple[str, str]] = []
        self.closed: list[tuple[int, str]] = []

    def _bailout(self, code, reason=None):
        self.log.warn('failing WebSocket connection (code={code}): "{reason}"', code=code, reason=reason)
        self.closed.append((code, reason))


def patched(lines=None):
    import txaio

    txaio.use_twisted()
    from authenticator.patches.protocol_errors import _on_message

    faults = []
    lines = lines or SimpleNamespace(fault=lambda protocol, error: faults.append(error))
    return _on_message(lambda *a: None, lines), faults


def test_a_clients_invalid_uri_closes_1002_with_no_traceback_and_no_second_line():
    from autobahn.wamp.exception import InvalidUriError

    on_message, faults = patched()

    def parse(payload):
        raise InvalidUriError(f"'topic' in SUBSCRIBE: invalid value {payload!r}")

    protocol = FakeProtocol(parse)
    on_message(protocol, b"x\ny", False)
    assert [type(f).__name__ for f in faults] == ["InvalidUriError"]
    assert protocol.closed == [(1002, "WAMP Protocol Error ('topic' in SUBSCRIBE: invalid value b'x\\ny')")]
    assert [level for level, _ in protocol.logged] == []  # not Autobahn's "failing WebSocket connection" line
    assert "log" not in vars(protocol)  # the protocol's own logger is back


def test_a_protocol_error_of_the_session_is_the_clients_and_any_other_error_is_ours():
    from autobahn.wamp.exception import ProtocolError

    on_message, faults = patched()

    def out_of_place(msg):
        raise ProtocolError("Received SUBSCRIBE message, but no session is attached")

    protocol = FakeProtocol(lambda payload: ["msg"], out_of_place)
    on_message(protocol, b"[]", False)
    assert len(faults) == 1 and protocol.closed[0][0] == 1002

    def bug(msg):
        raise KeyError("ours")

    protocol = FakeProtocol(lambda payload: ["msg"], bug)
    on_message(protocol, b"[]", False)
    assert len(faults) == 1  # not a client fault
    assert protocol.closed == [(1011, "WAMP Internal Error ('ours')")]
    critical = [text for level, text in protocol.logged if level == "critical"]
    assert len(critical) == 1 and "Traceback" in critical[0]  # as Autobahn does


def test_install_holds_on_this_autobahn_and_crossbar_and_is_idempotent():
    import txaio

    txaio.use_twisted()
    from autobahn.wamp.websocket import WampWebSocketProtocol
    from crossbar.router.protocol import WampWebSocketServerProtocol

    from authenticator.patches.protocol_errors import install

    original = WampWebSocketProtocol.__dict__["onMessage"]
    try:
        install(ProtocolErrorLog(lambda *a, **k: None, lambda *a: None))
        patched_once = WampWebSocketProtocol.__dict__["onMessage"]
        install()
        assert WampWebSocketProtocol.__dict__["onMessage"] is patched_once
        assert WampWebSocketServerProtocol.onMessage is patched_once
    finally:
        WampWebSocketProtocol.onMessage = getattr(original, "_crossbar_jwt_replaced", original)


def test_install_refuses_an_onmessage_that_no_longer_parses_and_dispatches():
    import pytest
    import txaio

    txaio.use_twisted()
    from autobahn.wamp.websocket import WampWebSocketProtocol

    from authenticator.patches.protocol_errors import install

    original = WampWebSocketProtocol.__dict__["onMessage"]
    try:
        WampWebSocketProtocol.onMessage = lambda self, payload, isBinary: self.handle(payload)
        with pytest.raises(RuntimeError, match="no longer does what the patch replaces"):
            install(ProtocolErrorLog(lambda *a, **k: None, lambda *a: None))
    finally:
        WampWebSocketProtocol.onMessage = original
