"""No NaN, Infinity or lone surrogate crosses the router as JSON: refused on the way in, never
written on the way out; and no message that cannot be serialized for a peer breaks its sender.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity`` (and a number such as ``1e999`` as
infinity) and writes them back bare. They are not JSON (RFC 8259). A peer that parses strictly
breaks: AutobahnJS in Node throws in ``JSON.parse`` inside the WebSocket's message handler and
receives nothing more on that connection (its kit still says "connected"), and Chromium loses the
event. One publication of ``[NaN]`` by anyone allowed to publish made every Node subscriber of
the topic deaf.

Patched (verified on Autobahn 26.10.2, with Crossbar 26.10.1), in the router worker and in every
proxy worker, by :func:`install` (called from ``hardening.harden_router_worker``):

- **In** ``autobahn.wamp.serializer:_WAMPJsonDecoder``, the decoder class that
  ``JsonObjectSerializer.unserialize`` (through the module's ``_loads``) parses every WAMP
  message with: a subclass that refuses ``NaN``/``Infinity``/``-Infinity`` and numbers beyond the
  float range. Autobahn turns the error into a protocol error: the sender's connection is closed
  (WebSocket close 1002) with the reason, e.g. ``WAMP Protocol Error (invalid serialization of WAMP
  message: NonFiniteNumber NaN is not JSON: send null or a string)``. Nothing of the message
  reaches the router. The same holds for HELLO, CALL, YIELD: every message, every field.
  The decoder also refuses a string, value or key, holding a lone surrogate (the escape
  ``"\\ud800"`` without its pair, which Python reads into a ``str`` that is not Unicode and that
  no UTF-8 writer takes back: the broker's fan-out raised at the first JSON peer, so later
  receivers missed the event, with a traceback per message; behind the proxies the CBOR link
  failed and the publisher had no answer). The reason: ``... LoneSurrogate \\ud800 is not valid
  Unicode: send valid UTF-8)``. The binary decoders (CBOR, MessagePack) refuse invalid UTF-8
  themselves.
- **Out** ``autobahn.wamp.serializer:_WAMPJsonEncoder``, the encoder class of ``_dumps``: a
  subclass that writes with ``allow_nan=False``. And ``autobahn.wamp.websocket:
  WampWebSocketProtocol.send`` and ``autobahn.twisted.rawsocket:WampRawSocketProtocol.send``
  (the transports of every peer of the router and of the proxies, JSON or not, the proxies'
  CBOR link to the router both ways): the message is serialized for the peer first, and one
  that cannot be (any serialization error: NaN for JSON, a lone surrogate for JSON, CBOR or
  MessagePack, a type no serializer takes) is not sent to that peer; the others get it. What can
  still carry a float NaN to a JSON peer is a session that does not speak JSON: a component
  inside the router, or a client on a transport an operator opened to CBOR or MessagePack (the
  shipped configs offer JSON only; the CBOR link between proxies and the router carries only what
  a proxy parsed as JSON). Such a
  message (or one a component made with a lone surrogate) is dropped for each peer that cannot
  take it, with one warn line per message (at most one every
  ``WARN_INTERVAL`` seconds, counting the rest); binary peers get it as sent. A dropped INVOCATION
  or RESULT leaves its call to the call's timeout. Not covered: Crossbar's long-poll transport
  (in no shipped config), whose send raises instead of dropping.

Why patch the classes rather than ``_loads``/``_dumps``: those two functions stay Autobahn's own
(its binary and decimal handling included) and find the classes by their module global at each
call. :func:`install` proves the patch holds on the running Autobahn (a round trip through a
``JsonObjectSerializer``) and raises if a target is missing or the proof fails, so an upgrade
cannot silently take the protection away. Autobahn's optional ujson mode
(``AUTOBAHN_USE_UJSON``) has no such classes: install raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# At most one warn line per this many seconds for messages dropped on the way out; the line counts
# the ones not logged since.
from authenticator.core.json_guard import (  # noqa: E402,F401 - the patch's vocabulary
    LoneSurrogate,
    NonFiniteNumber,
    finite_float,
    may_hold_surrogates,
    refuse_constant,
    refuse_lone_surrogates,
)

WARN_INTERVAL = 10.0

TARGETS = (
    "autobahn.wamp.serializer:_WAMPJsonDecoder",
    "autobahn.wamp.serializer:_WAMPJsonEncoder",
    "autobahn.wamp.websocket:WampWebSocketProtocol.send",
    "autobahn.twisted.rawsocket:WampRawSocketProtocol.send",
)


_OUT_OF_RANGE = "Out of range float values are not JSON compliant"  # CPython's json encoder


def _decoder(base: type) -> type:
    class FiniteJsonDecoder(base):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("parse_constant", refuse_constant)
            if not kwargs.get("use_decimal_from_float"):  # that mode reads floats as Decimal: finite
                kwargs.setdefault("parse_float", finite_float)
            super().__init__(*args, **kwargs)

        def decode(self, s, *args, **kwargs):
            document = super().decode(s, *args, **kwargs)
            if may_hold_surrogates(s):
                refuse_lone_surrogates(document)
            return document

    FiniteJsonDecoder._crossbar_jwt_finite_json = True
    return FiniteJsonDecoder


def _encoder(base: type) -> type:
    class FiniteJsonEncoder(base):
        def __init__(self, *args, **kwargs):
            kwargs["allow_nan"] = False
            super().__init__(*args, **kwargs)

        def encode(self, o):
            try:
                return super().encode(o)
            except ValueError as error:
                if str(error).startswith(_OUT_OF_RANGE):
                    raise NonFiniteNumber("the message carries NaN or Infinity, which JSON cannot carry") from None
                raise

    FiniteJsonEncoder._crossbar_jwt_finite_json = True
    return FiniteJsonEncoder


class _Unsendable:
    """The mark a message gets in its serialization cache (``Message._serialized``) once it failed
    to serialize for one kind of peer (JSON, CBOR, ...): later peers of that kind skip it without
    serializing again or logging again. A NAME and a length, like the cache's other entries
    (Crossbar's tracing reads them)."""

    def __init__(self, kind: str) -> None:
        self.NAME = f"not-{kind}"


_UNSENDABLE: dict[str, _Unsendable] = {}


def unsendable_mark(kind: str) -> _Unsendable:
    return _UNSENDABLE.setdefault(kind, _Unsendable(kind))


NOT_JSON = unsendable_mark("json")


def _why(error: Exception, kind: str) -> str:
    """What a peer of `kind` could not be sent, in words: never the error's own text (a
    UnicodeEncodeError's holds the surrogate itself, which no log line can carry)."""
    if isinstance(error, NonFiniteNumber):
        return "it carries NaN or Infinity, which JSON cannot carry"
    if isinstance(error, UnicodeError):
        return "it carries a lone surrogate, which is not valid Unicode"
    return f"it cannot be written as {kind.upper()} ({type(error).__name__})"


class DropLog:
    """One warn line for a message dropped on the way out, at most one per `interval` seconds."""

    def __init__(self, warn: Callable[..., None], interval: float = WARN_INTERVAL, clock=time.monotonic) -> None:
        self._warn, self._interval, self._clock = warn, interval, clock
        self._last: float | None = None
        self._unlogged = 0

    def dropped(self, msg, session_id, error: Exception | None = None, kind: str = "json") -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last such line)" if self._unlogged else ""
        self._last, self._unlogged = now, 0
        why = _why(error if error is not None else NonFiniteNumber(""), kind)
        self._warn(
            "authenticator: {kind} not sent to {peers} peers: {why} (the first: session={session}){more}. It came "
            "from a session the router could not refuse it from (a component in the router, or a client of "
            "another serializer).",
            kind=type(msg).__name__.upper(), peers=kind.upper(), why=why, session=session_id, more=more,
        )  # fmt: skip


_drops: DropLog | None = None  # this process's, set by install()


def _sends_only_what_serializes(send: Callable) -> Callable:
    def send_only_json(self, msg):
        """Serializes the message for this peer first (Autobahn caches the bytes per serializer:
        the send below writes them); a message that cannot be serialized for it is not sent to it,
        with the rate-limited line, instead of raising into the sender (the broker's fan-out loop,
        the proxy's forwarding), which left every later peer without it and logged a traceback."""
        cache = msg._serialized  # Autobahn's bytes of this message, per serializer instance
        serializer = getattr(getattr(self, "_serializer", None), "_serializer", None)
        # Already serialized for this serializer (a fan-out's later peers): nothing to check.
        if serializer is not None and serializer not in cache and self.isOpen():
            kind = str(getattr(serializer, "NAME", "binary"))
            mark = unsendable_mark(kind)
            if mark in cache:
                return None
            try:
                msg.serialize(serializer)  # cached: the send below writes these bytes
            except Exception as error:  # noqa: BLE001 - every serialization error: ValueError, TypeError, UnicodeError, CBORError...
                cache[mark] = b""
                _drops.dropped(msg, getattr(self._session, "_session_id", None), error, kind)
                return None
        return send(self, msg)

    send_only_json._crossbar_jwt_finite_json = True
    return send_only_json


def install(warn: Callable[..., None] | None = None) -> None:
    """Install the patch (once per process) and prove it holds; raises RuntimeError if a target is
    missing or Autobahn no longer uses it. `warn` takes a Twisted log format and its fields."""
    from autobahn.twisted import rawsocket
    from autobahn.wamp import serializer, websocket

    if getattr(serializer, "_USE_UJSON", False):
        raise RuntimeError("finite_json: Autobahn runs its ujson mode (AUTOBAHN_USE_UJSON), which this patch "
                           "does not cover; unset AUTOBAHN_USE_UJSON")  # fmt: skip
    global _drops  # noqa: PLW0603 - one per process, as the patch
    if warn is None:
        from twisted.logger import Logger

        warn = Logger(namespace="authenticator.patches.finite_json").warn
    if _drops is None:
        _drops = DropLog(warn)
    decoder, encoder = getattr(serializer, "_WAMPJsonDecoder", None), getattr(serializer, "_WAMPJsonEncoder", None)
    websocket_send = getattr(websocket.WampWebSocketProtocol, "send", None)
    rawsocket_send = getattr(rawsocket.WampRawSocketProtocol, "send", None)
    missing = [name for name, target in zip(TARGETS, (decoder, encoder, websocket_send, rawsocket_send), strict=True)
               if target is None]  # fmt: skip
    if missing:
        raise RuntimeError(f"finite_json: {', '.join(missing)} is missing: NaN/Infinity would reach JSON peers")
    if not getattr(decoder, "_crossbar_jwt_finite_json", False):
        serializer._WAMPJsonDecoder = _decoder(decoder)
    if not getattr(encoder, "_crossbar_jwt_finite_json", False):
        serializer._WAMPJsonEncoder = _encoder(encoder)
    if not getattr(websocket_send, "_crossbar_jwt_finite_json", False):
        websocket.WampWebSocketProtocol.send = _sends_only_what_serializes(websocket_send)
    if not getattr(rawsocket_send, "_crossbar_jwt_finite_json", False):
        rawsocket.WampRawSocketProtocol.send = _sends_only_what_serializes(rawsocket_send)
    _prove(serializer)


def _prove(serializer) -> None:
    """A round trip through Autobahn's own JSON serializer: NaN refused in, not written out."""
    json_serializer = serializer.JsonObjectSerializer()
    for refused_in in (b"[NaN]", b"[-Infinity]", b"[1e999]"):
        try:
            json_serializer.unserialize(refused_in)
        except NonFiniteNumber:
            continue
        raise RuntimeError(
            f"finite_json: Autobahn's JSON serializer still reads {refused_in!r}: the patch does not hold"
        )
    for refused_in in (b'["\\ud800"]', b'[{"\\udfff": 1}]'):
        try:
            json_serializer.unserialize(refused_in)
        except LoneSurrogate:
            continue
        raise RuntimeError(
            f"finite_json: Autobahn's JSON serializer still reads {refused_in!r}: the patch does not hold"
        )
    try:
        json_serializer.serialize([float("nan")])
    except NonFiniteNumber:
        pass
    else:
        raise RuntimeError("finite_json: Autobahn's JSON serializer still writes NaN: the patch does not hold")
    if json_serializer.unserialize(b'[1.5,"\\u0000AQI="]') != [[1.5, b"\x01\x02"]]:
        raise RuntimeError("finite_json: Autobahn's JSON serializer no longer reads its own format")
