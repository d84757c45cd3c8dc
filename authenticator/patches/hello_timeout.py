"""A deadline for a WebSocket client to join a WAMP session (Crossbar has none).

Without it, a client that completes the WebSocket upgrade and then never sends HELLO (or sends
HELLO and never answers the CHALLENGE) holds its connection, a file descriptor and a pending
session for as long as it answers pings: a few thousand such sockets lock every other client out.
The deadline runs from the upgrade to the session's WELCOME. A client that misses it gets a
WebSocket close (1008, policy violation) and a transport close, not a WAMP ABORT: AutobahnJS
retries after a lost transport but gives up after an ABORT, and a slow honest client should retry.

Where it holds:

- router worker: the authenticator component calls :func:`install_hello_timeout` from its
  constructor, which Crossbar runs before the transports open;
- proxy workers (which load no component): the derived scale-out config
  (``authenticator/config/proxy_profile.py``) adds a ``resource`` web path whose factory,
  :func:`authenticator.patches.hardening.harden_proxy_worker`, installs it while Crossbar builds the
  worker's paths, before the ``ws`` path exists (Crossbar starts a transport's paths in sorted order).

The deadline is per WebSocket connection (Crossbar's ``WampWebSocketServerProtocol``, which both
workers use); a session that joins and later leaves with GOODBYE on the same connection is not
timed again.
"""

from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from authenticator.core.settings import DEFAULT_HELLO_TIMEOUT_SECONDS  # the default, kept with the settings

MAX_HELLO_TIMEOUT_SECONDS = 300
# After our close frame, the peer's time to close the connection before we drop it. Crossbar's
# own close-handshake timeout is off unless the config sets it: a peer that never answered would
# keep the socket forever.
CLOSE_GRACE_SECONDS = 2.0


class _Deadline:
    def __init__(self, seconds: float, clock: IReactorTime) -> None:
        self.seconds = seconds
        self.clock = clock

    def start(self, protocol) -> None:
        protocol._crossbar_jwt_hello_call = self.clock.callLater(self.seconds, self._expire, protocol)

    def _expire(self, protocol) -> None:
        protocol._crossbar_jwt_hello_call = None
        session = protocol._session
        if protocol.state != WebSocketProtocol.STATE_OPEN or session is None:
            return
        if getattr(session, "_session_id", None) is not None:
            return  # joined (Crossbar's RouterSession and ProxyFrontendSession set it at WELCOME)
        protocol.log.info(
            "authenticator: closing WebSocket from {peer}: no WAMP session within {seconds} s",
            peer=protocol.peer,
            seconds=self.seconds,
        )
        reason = f"no WAMP session within {self.seconds:g} s".encode()
        protocol.sendCloseFrame(code=WebSocketProtocol.CLOSE_STATUS_CODE_POLICY_VIOLATION, reasonUtf8=reason)
        self.clock.callLater(CLOSE_GRACE_SECONDS, _drop_if_open, protocol)


def _drop_if_open(protocol) -> None:
    if protocol.state != WebSocketProtocol.STATE_CLOSED:
        protocol.dropConnection(abort=True)


def install_hello_timeout(seconds: float = DEFAULT_HELLO_TIMEOUT_SECONDS, clock: IReactorTime | None = None) -> None:
    """Close every WAMP WebSocket of this worker whose session has not joined `seconds` after the
    upgrade. Installing again changes the deadline for connections opened from then on."""
    number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not number or not 0 < seconds <= MAX_HELLO_TIMEOUT_SECONDS:
        raise ValueError(f"the HELLO timeout must be a number of seconds in (0, {MAX_HELLO_TIMEOUT_SECONDS:g}]")
    if clock is None:
        from twisted.internet import reactor as clock
    from crossbar.router.protocol import WampWebSocketServerProtocol as protocol_class

    installed = protocol_class.__dict__.get("_crossbar_jwt_hello_deadline")
    if installed is not None:
        installed.seconds, installed.clock = float(seconds), clock
        return
    protocol_class._crossbar_jwt_hello_deadline = _Deadline(float(seconds), clock)
    protocol_class._crossbar_jwt_hello_call = None
    on_open, on_close = protocol_class.onOpen, protocol_class.onClose

    def onOpen(self):  # noqa: N802 - Autobahn's name
        on_open(self)
        self._crossbar_jwt_hello_deadline.start(self)

    def onClose(self, wasClean, code, reason):  # noqa: N802, N803 - Autobahn's names
        call: IDelayedCall | None = self._crossbar_jwt_hello_call
        if call is not None and call.active():
            call.cancel()
        self._crossbar_jwt_hello_call = None
        on_close(self, wasClean, code, reason)

    protocol_class.onOpen, protocol_class.onClose = onOpen, onClose
