"""A protocol error a client causes is the client's fault: one bounded warn line, no traceback.

Patched (verified on Autobahn 26.10.2 with Crossbar 26.10.1), in the router worker and in every
proxy worker, by :func:`install` (called from ``hardening.harden_router_worker``):

- **Target** ``autobahn.wamp.websocket:WampWebSocketProtocol.onMessage``: every WAMP message a
  WebSocket peer sends is parsed (``self._serializer.unserialize``) and handed to the session
  (``self._session.onMessage``) there; Crossbar's ``WampWebSocketServerProtocol``
  (crossbar/router/protocol.py), which the router's and the proxies' ``ws`` paths use, inherits it.
- **Target** ``crossbar.worker.proxy:ProxyFrontendSession.onMessage``, in proxy workers only, by
  :func:`install_proxy_frontend` (``hardening.harden_proxy_worker``): behind proxies the session
  raises its ProtocolError in a Deferred of its own, which the first target never sees.

Why. On any error there Autobahn logs ``log.critical("{tb}", tb=traceback.format_exc())``: the
full traceback, ~4.2 KB, with the client's text verbatim in the exception's words (a SUBSCRIBE
URI or a HELLO realm with ``\\n`` and a made-up line became a line of its own in the node log).
``InvalidUriError`` is not a ``ProtocolError``, so an invalid URI was even reported as an
internal error and closed with 1011. Then ``_bailout`` fails the connection, and Autobahn logs the
client's text a second time ("failing WebSocket connection (code=...): ..."). One client sending
one bad message per connection wrote ~390 tracebacks a second.

What changes. A *client fault* is any error while parsing the client's message (whatever parsing
the client's bytes raised), or a ``ProtocolError``/``InvalidUriError`` from the session for a
message it may not send (e.g. SUBSCRIBE before HELLO). It closes the connection as Autobahn does
for a protocol error (WebSocket close 1002, reason ``WAMP Protocol Error (...)``) with one warn
line, ``protocol error, connection closed (1002): peer=... session=... authid=... error=<type>:
<words, at most 600 characters>``, and no traceback; Autobahn's own "failing WebSocket connection"
line for that close is not written (it only repeated the client's words). Any other error is ours
or Crossbar's: logged and closed exactly as Autobahn does (traceback, 1011). The log observer
(authenticator/patches/log_values.py) escapes whatever the line carries.

How many. Autobahn hands a connection it failed no further message (``onMessageEnd`` checks
``failedByMe``), so a connection causes at most one such line however many messages it had sent.
A client that reconnects for every message is bounded per worker: at most ``BURST`` lines per
``WINDOW_SECONDS``; the rest are counted, and one summary line at the end of the window says how
many were not logged.

:func:`install` raises RuntimeError if the target is gone, if the function it replaces no longer
parses and dispatches as described (its code must still call ``unserialize``, ``onMessage``,
``format_exc`` and ``_bailout``), or if Crossbar's protocol does not inherit the patched method:
an upgrade cannot silently take the protection away.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authenticator.core.logtext import clip

TARGET = "autobahn.wamp.websocket:WampWebSocketProtocol.onMessage"
# What the replaced function must still do for the replacement to be equivalent (its code's names).
_EXPECTED_NAMES = frozenset({"unserialize", "onMessage", "format_exc", "_bailout"})
BURST = 10  # protocol-error lines per window and worker
WINDOW_SECONDS = 10.0
MAX_ERROR_CHARS = 600  # of the exception's words in the line (the first half: what the client sent)
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INTERNAL_ERROR = 1011


class Budget:
    """At most `burst` lines per window of `window` seconds; the rest are counted.

    A window starts with the first line after the previous one ended. `take` says whether to log
    now; `more` is the number refused since the last `drain`. Pure (a clock is given)."""

    def __init__(self, burst: int = BURST, window: float = WINDOW_SECONDS, clock=time.monotonic) -> None:
        self.burst, self.window, self._clock = burst, window, clock
        self._started: float | None = None
        self._used = 0
        self.more = 0

    def take(self) -> bool:
        now = self._clock()
        if self._started is None or now - self._started >= self.window:
            self._started, self._used = now, 0
        if self._used < self.burst:
            self._used += 1
            return True
        self.more += 1
        return False

    def ends_in(self) -> float:
        """Seconds until the current window ends (0 when there is none)."""
        if self._started is None:
            return 0.0
        return max(0.0, self._started + self.window - self._clock())

    def drain(self) -> int:
        more, self.more = self.more, 0
        return more


class ProtocolErrorLog:
    """The lines of client faults in one worker: at most a budget of them, and a summary of the rest
    once per window (scheduled with `call_later`, Twisted's reactor.callLater)."""

    def __init__(self, warn: Callable[..., None], call_later: Callable, budget: Budget | None = None) -> None:
        self._warn, self._call_later = warn, call_later
        self.budget = budget or Budget()
        self._summary = None

    def fault(self, protocol, error: BaseException) -> None:
        if not self.budget.take():
            if self._summary is None:
                self._summary = self._call_later(self.budget.ends_in(), self._summarize)
            return
        session = getattr(protocol, "_session", None)
        try:
            words = f"{type(error).__name__}: {error}"
        except Exception:  # noqa: BLE001 - an exception whose words cannot be read is still logged
            words = type(error).__name__
        self._warn(
            "protocol error, connection closed (1002): peer={peer} session={session} authid={authid} error={error}",
            peer=getattr(protocol, "peer", None), session=getattr(session, "_session_id", None),
            authid=getattr(session, "_authid", None),
            error=clip(words, MAX_ERROR_CHARS),
        )  # fmt: skip

    def _summarize(self) -> None:
        self._summary = None
        more = self.budget.drain()
        if more:
            self._warn(
                "protocol errors: {more} more in the last {seconds:g} s not logged (at most {burst} lines per "
                "{seconds:g} s)", more=more, seconds=self.budget.window, burst=self.budget.burst,
            )  # fmt: skip


class _WarningsDropped:
    """A protocol's logger while it closes after a client fault: Autobahn's warning for the close
    repeats the client's words, and the fault was logged (or counted) already."""

    def __init__(self, log) -> None:
        self._log = log

    def warn(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._log, name)


def _close_for_protocol_error(protocol, error: BaseException) -> None:
    had_own = "log" in protocol.__dict__
    own = protocol.__dict__.get("log")
    protocol.log = _WarningsDropped(protocol.log)
    try:
        protocol._bailout(CLOSE_PROTOCOL_ERROR, reason=f"WAMP Protocol Error ({error})")
    finally:
        if had_own:
            protocol.log = own
        else:
            del protocol.log


def _on_message(original: Callable, lines: ProtocolErrorLog) -> Callable:
    import traceback

    from autobahn.wamp.exception import InvalidUriError, ProtocolError

    def onMessage(self, payload: bytes, isBinary: bool):  # noqa: N802, N803 - Autobahn's names
        try:
            messages = self._serializer.unserialize(payload, isBinary)
        except Exception as error:  # noqa: BLE001 - whatever parsing the client's bytes raised
            lines.fault(self, error)
            _close_for_protocol_error(self, error)
            return
        try:
            for msg in messages:
                self.log.trace("WAMP-Receive({session}, {authid}) << {message}", message=msg,
                               session=getattr(self._session, "_session_id", None),
                               authid=getattr(self._session, "_authid", None))  # fmt: skip
                self._session.onMessage(msg)
        except (ProtocolError, InvalidUriError) as error:
            lines.fault(self, error)
            _close_for_protocol_error(self, error)
        except Exception as error:  # noqa: BLE001 - as Autobahn: ours or Crossbar's to fix, with its traceback
            self.log.critical("{tb}", tb=traceback.format_exc())
            self._bailout(CLOSE_INTERNAL_ERROR, reason=f"WAMP Internal Error ({error})")

    onMessage._crossbar_jwt_protocol_errors = True
    onMessage._crossbar_jwt_replaced = original
    return onMessage


_shared: dict = {"lines": None}


def shared_log() -> ProtocolErrorLog:
    """This worker's one ProtocolErrorLog: the WebSocket patch and the proxy frontend's share its budget."""
    if _shared["lines"] is None:
        from twisted.internet import reactor
        from twisted.logger import Logger

        log = Logger(namespace="authenticator.patches.protocol_errors")
        _shared["lines"] = ProtocolErrorLog(log.warn, reactor.callLater)
    return _shared["lines"]


def install(lines: ProtocolErrorLog | None = None) -> None:
    """Install the patch (once per process); RuntimeError when it cannot hold (see the module)."""
    from autobahn.wamp import websocket
    from crossbar.router.protocol import WampWebSocketServerProtocol

    current = websocket.WampWebSocketProtocol.__dict__.get("onMessage")
    if current is None:
        raise RuntimeError(f"protocol_errors: {TARGET} is gone; protocol errors would be logged with tracebacks")
    if not getattr(current, "_crossbar_jwt_protocol_errors", False):
        missing = _EXPECTED_NAMES - set(getattr(getattr(current, "__code__", None), "co_names", ()))
        if missing:
            raise RuntimeError(
                f"protocol_errors: {TARGET} no longer does what the patch replaces (it does not use "
                f"{', '.join(sorted(missing))}); verify the patch on this Autobahn"
            )
        websocket.WampWebSocketProtocol.onMessage = _on_message(current, lines or shared_log())
    if not getattr(WampWebSocketServerProtocol.onMessage, "_crossbar_jwt_protocol_errors", False):
        raise RuntimeError(
            "protocol_errors: crossbar.router.protocol:WampWebSocketServerProtocol no longer inherits "
            f"{TARGET}; the patch would not hold"
        )


# -- Behind proxies: the proxy worker's frontend session ---------------------------------------------

PROXY_TARGET = "crossbar.worker.proxy:ProxyFrontendSession.onMessage"
# What the replaced generator must still do: raise ProtocolError for a message out of place.
_EXPECTED_PROXY_NAMES = frozenset({"ProtocolError", "_process_Hello", "_session_id"})


def _frontend_on_message(original: Callable, lines: ProtocolErrorLog) -> Callable:
    from autobahn.wamp.exception import ProtocolError
    from twisted.internet.defer import Deferred

    def fault(failure, session, transport):
        if not failure.check(ProtocolError):
            return failure  # ours or Crossbar's: as Crossbar handles it ("Unhandled error in Deferred")
        protocol = session.transport or transport
        lines.fault(protocol, failure.value)
        if protocol is not None:
            if hasattr(protocol, "_bailout"):
                _close_for_protocol_error(protocol, failure.value)
            elif hasattr(protocol, "abort"):  # a RawSocket frontend: no close code to give
                protocol.abort()
        # The client is gone for the session, as its onClose will say once the close completes: a HELLO
        # still in the authenticator or the backend join then ends quietly (Crossbar checks the
        # transport) instead of sending WELCOME on the closing connection (Disconnected, a traceback).
        session.transport = None
        return None

    def onMessage(self, msg):  # noqa: N802 - Crossbar's name
        transport = self.transport  # gone from the session once the connection closed (onClose resets it)
        result = original(self, msg)
        if isinstance(result, Deferred):
            result.addErrback(fault, self, transport)
        return result

    onMessage._crossbar_jwt_protocol_errors = True
    onMessage._crossbar_jwt_replaced = original
    return onMessage


def install_proxy_frontend(lines: ProtocolErrorLog | None = None) -> None:
    """Behind proxies, the same for the messages a proxy worker's frontend session refuses
    (once per process; RuntimeError when it cannot hold).

    **Target** ``crossbar.worker.proxy:ProxyFrontendSession.onMessage`` (Crossbar 26.10.1,
    verified): the session of a client's connection to a proxy worker. It is an
    ``inlineCallbacks`` generator, so the ``ProtocolError`` it raises for a message out of place
    (GOODBYE or PUBLISH pipelined before WELCOME: "... while proxy frontend session is not joined";
    a second HELLO after joining: "... already joined") never reaches the patched
    ``WampWebSocketProtocol.onMessage``: it fails the Deferred, which nobody waits on, and Twisted
    logged "Unhandled error in Deferred" with the traceback when it was collected (~550 bytes a
    connection, no token needed, 910 in 5 s from one client), and the connection stayed open.

    What changes: a ``ProtocolError`` from that Deferred (at once or later) is a client fault as
    above: one line through the worker's shared :class:`ProtocolErrorLog` (the same budget), and
    the connection is closed 1002 with ``WAMP Protocol Error (...)``. Any other failure is left to
    Crossbar and Twisted as before."""
    import inspect

    from crossbar.worker.proxy import ProxyFrontendSession

    current = ProxyFrontendSession.__dict__.get("onMessage")
    if current is None:
        raise RuntimeError(f"protocol_errors: {PROXY_TARGET} is gone; protocol errors would be logged with tracebacks")
    if getattr(current, "_crossbar_jwt_protocol_errors", False):
        return
    generator = getattr(current, "__wrapped__", None)  # inlineCallbacks keeps the generator function
    missing = _EXPECTED_PROXY_NAMES - set(getattr(getattr(generator, "__code__", None), "co_names", ()))
    if not inspect.isgeneratorfunction(generator) or missing:
        raise RuntimeError(
            f"protocol_errors: {PROXY_TARGET} is no longer the inlineCallbacks generator raising ProtocolError that "
            "the patch wraps; verify the patch on this Crossbar"
        )
    ProxyFrontendSession.onMessage = _frontend_on_message(current, lines or shared_log())
