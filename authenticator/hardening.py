"""What Crossbar and its dependencies leave open in the router worker, closed from inside it.

The component calls :func:`harden_router_worker` from its constructor, which Crossbar runs in the
router worker before the transports open, so no client byte is parsed before it holds; proxy
workers, which load no component, get the same from :func:`harden_proxy_worker`. Each step
checks what it changes and says so in the log when it cannot (an upgrade of Crossbar or Autobahn
must not silently take a protection away).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping, Sized
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.web.resource import IResource

# Python's own default. Crossbar imports py_ecc (through its XBR dependencies), which runs
# sys.setrecursionlimit(100000) on import: with that limit the C parsers of WAMP messages
# (ubjson, cbor, ...) overflow the C stack on a deeply nested message and the worker dies with
# SIGSEGV (taking the node with it), and the JSON parser's RecursionError arrives 100,000 frames
# deep, whose traceback Autobahn formats into a log line of many megabytes.
RECURSION_LIMIT = 1000
# Modules that raise the limit when first imported: imported here first, so that the side effect
# is spent before the limit is restored, and a later import by Crossbar is a no-op.
_RAISES_THE_LIMIT = ("py_ecc",)
# The longest value a log event may carry into the node log. Client-controlled text (a URI, a
# protocol error quoting a message, a traceback of a parse) must not make a log line large: the
# controller relays worker lines in time quadratic in their length while the worker blocks on
# the full pipe.
MAX_LOGGED_VALUE = 2000
# Tokens in log lines. Crossbar logs each new session's authextra at info, and behind proxies that
# holds every header of the client's upgrade (Cookie, Authorization: a token); at debug it logs
# WAMP messages, tickets included. Whatever Crossbar logs, a JWS in compact form (its header is
# JSON, so its base64url starts with "eyJ") and the values of Cookie, Set-Cookie and
# Authorization headers (also as the bytes a proxy's reverseproxy path logs) are replaced before
# the line is written.
_JWS = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_SECRET_HEADER = re.compile(
    r"""(b?['"](?:set-)?(?:cookie|authorization)['"]\s*:\s*b?)(['"])(?:(?!\2).)*\2""", re.IGNORECASE
)
REDACTED = "<redacted>"


def harden_router_worker(warn: Callable[[str], None]) -> None:
    restore_recursion_limit()
    keep_crossbar_details_out_of_welcome()
    if not bound_log_values():
        warn("authenticator: Crossbar's worker log observer was not found; log lines are not bounded")


def harden_proxy_worker(extra: Mapping) -> IResource:
    """Factory of a Crossbar ``resource`` web path: the one way to run our code in a proxy worker,
    which loads no component. The derived scale-out config (authenticator/scaleout.py) gives every
    proxy transport this path, named to sort before its WebSocket path: Crossbar builds a
    transport's paths in sorted order and listens after, so it holds before any client byte.

    ``{"type": "resource", "classname": "authenticator.hardening.harden_proxy_worker",
    "extra": {"hello_timeout_seconds": 10, "max_request_body_bytes": {"publish": 65536}}}``; the
    path itself answers 404.
    """
    from twisted.logger import Logger
    from twisted.web.pages import notFound

    from .body_limit import limit_path
    from .hello_timeout import DEFAULT_HELLO_TIMEOUT_SECONDS, install_hello_timeout

    log = Logger()
    harden_router_worker(lambda message: log.warn(message))
    install_hello_timeout(extra.get("hello_timeout_seconds", DEFAULT_HELLO_TIMEOUT_SECONDS))
    for path, limit in (extra.get("max_request_body_bytes") or {}).items():  # the paths forwarded to the router
        limit_path(path, limit, lambda request, limit: log.warn(
            "http request refused: status=413 reason=too_large detail=body over {limit} bytes, refused while it "
            "arrived", limit=limit))  # fmt: skip
    return notFound()


def restore_recursion_limit() -> int:
    for name in _RAISES_THE_LIMIT:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    sys.setrecursionlimit(RECURSION_LIMIT)
    return sys.getrecursionlimit()


def keep_crossbar_details_out_of_welcome() -> None:
    """What a client's WELCOME.authextra may carry: what the authenticator returned, not Crossbar's
    additions.

    Crossbar 26 writes ``x_cb_node`` (the host name unless the node config names the node),
    ``x_cb_worker``, ``x_cb_peer`` and ``x_cb_pid`` into every session's authextra
    (router/session.py, welcome()), proxy workers add ``x_cb_proxy_*``, and behind proxies the
    router's session gets ``transport``: the frontend connection's details with **every HTTP header
    the client sent**, so a page's script could read its own HttpOnly token cookie back from
    WELCOME. Crossbar has no option to leave them out. They stay in the router's own view of the
    session (meta API, authorizer); only the WELCOME message on the wire leaves them out.
    """
    from autobahn.wamp.message import Welcome

    if getattr(Welcome.marshal, "_keeps_crossbar_details_out", False):
        return
    marshal = Welcome.marshal

    def marshal_for_the_client(self):
        raw = marshal(self)
        extra = raw[2].get("authextra") if len(raw) > 2 and isinstance(raw[2], dict) else None
        if isinstance(extra, dict) and any(_crossbar_detail(key) for key in extra):
            raw[2] = {**raw[2], "authextra": {k: v for k, v in extra.items() if not _crossbar_detail(k)}}
        return raw

    marshal_for_the_client._keeps_crossbar_details_out = True
    Welcome.marshal = marshal_for_the_client


def _crossbar_detail(key: object) -> bool:
    return key == "transport" or (isinstance(key, str) and key.startswith("x_cb_"))


def drop_forwarded_yields(forwards: Callable[[str], bool], warn: Callable[..., None]) -> None:
    """A callee's YIELD may not name another callee.

    Crossbar 26 discloses to the caller the callee that the YIELD's ``forward_for`` names
    (router/dealer.py, processYield) — meant for router links relaying a result — and a YIELD is
    never authorized, so any session allowed to register could answer as ``root``/``admin``. Only
    sessions whose role `forwards` (router links, on static roles) keep it; for every other
    session the router drops it, so the caller sees the real callee.
    """
    from crossbar.router.dealer import Dealer

    if getattr(Dealer.processYield, "_drops_forwarded_yields", False):
        return
    process_yield = Dealer.processYield

    def process_yield_of_the_real_callee(self, session, yield_):
        if yield_.forward_for and not forwards(session._authrole):
            warn("authenticator: dropped forward_for of a YIELD from session={sid} authid={authid} role={role}: "
                 "a callee cannot answer as another session", sid=session._session_id,
                 authid=clip(session._authid, 200), role=clip(session._authrole, 200))  # fmt: skip
            yield_.forward_for = None
        return process_yield(self, session, yield_)

    process_yield_of_the_real_callee._drops_forwarded_yields = True
    Dealer.processYield = process_yield_of_the_real_callee


def clip(value: object, limit: int = MAX_LOGGED_VALUE) -> str:
    """Client-controlled text for a log line: at most `limit` characters, and says it was cut."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...[{len(text) - limit} characters cut]...{text[-limit // 2 :]}"


def bound_log_values() -> bool:
    """Wrap Crossbar's worker log observer so that no event value is longer than MAX_LOGGED_VALUE.

    Crossbar's worker writes every log event as JSON to its controller through one observer on
    Twisted's global log publisher (crossbar._logging.make_JSON_observer). Returns whether it was
    found (and is now wrapped, once).
    """
    from twisted.logger import globalLogPublisher

    observers = list(getattr(globalLogPublisher, "_observers", ()))
    found = False
    for observer in observers:
        if getattr(observer, "__qualname__", "") == _BoundedObserver.__qualname__:
            return True  # already wrapped
        if getattr(observer, "__qualname__", "") == "make_JSON_observer.<locals>._make_json":
            globalLogPublisher.removeObserver(observer)
            globalLogPublisher.addObserver(_BoundedObserver(observer))
            found = True
    return found


class _BoundedObserver:
    def __init__(self, inner) -> None:
        self._inner = inner

    def __call__(self, event: dict) -> None:
        if any(_too_long(value) for value in event.values()):
            event = {key: clip(value) if _too_long(value) else value for key, value in event.items()}
        redacted = {key: new for key, value in event.items() if (new := _redacted(value)) is not value}
        if redacted:
            event = {**event, **redacted}
        failure = event.get("log_failure")
        if failure is not None:
            event = {**event, "log_failure": _ClippedFailure(failure)}
        self._inner(event)


def _redacted(value: object) -> object:
    """The value itself, or, where it may carry a token, its text with tokens and secret header
    values replaced: a string, or a container Crossbar logs as a value (a request's headers as a
    dict) as the repr the line would render anyway. One repr per container."""
    text = repr(value) if isinstance(value, dict | list | tuple) else value
    if isinstance(text, str) and ("eyJ" in text or "ookie" in text or "uthorization" in text):
        return redact(text)
    return value


def redact(text: str) -> str:
    """The text with every compact JWS and every Cookie/Authorization header value replaced."""
    return _SECRET_HEADER.sub(rf"\1\2{REDACTED}\2", _JWS.sub(REDACTED, text))


def _too_long(value: object) -> bool:
    if isinstance(value, str | bytes):
        return len(value) > MAX_LOGGED_VALUE
    return isinstance(value, Sized) and not isinstance(value, dict) and len(value) > MAX_LOGGED_VALUE


class _ClippedFailure:
    """Stands in for a Failure in a log event: Crossbar's observer only renders its traceback."""

    def __init__(self, failure) -> None:
        self._failure = failure

    def getTraceback(self, *args, **kwargs) -> str:  # noqa: N802 - Twisted's name
        return redact(clip(self._failure.getTraceback(*args, **kwargs), 4 * MAX_LOGGED_VALUE))

    def __getattr__(self, name):
        return getattr(self._failure, name)
