"""What Crossbar and its dependencies leave open in the router worker, closed from inside it: the
entry points that install every patch of this package (each patch in its own module here).

The component calls :func:`harden_router_worker` from its constructor, which Crossbar runs in the
router worker before the transports open, so no client byte is parsed before it holds; proxy
workers, which load no component, get the same from :func:`harden_proxy_worker`. Each step
checks what it changes and says so in the log when it cannot (an upgrade of Crossbar or Autobahn
must not silently take a protection away).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from authenticator.patches.guard import Guard, guard_this_process
from authenticator.patches.log_values import require_bounded_log_values
from authenticator.patches.welcome_details import keep_crossbar_details_out_of_welcome

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


def harden_router_worker(warn: Callable[[str], None]) -> Guard:
    """Check the patch inventory (a version not verified, or a target gone, stops this worker with
    one line per patch) and install the patches every worker needs; the returned guard installs
    the others (the HELLO deadline, the YIELD rule), so that each goes through the same check."""
    from authenticator.patches.body_limit import install as bound_request_bodies  # every request body, while it arrives
    from authenticator.patches.debug_formatting import install as format_debug_values_only_when_logged
    from authenticator.patches.event_positions import install_event_details  # x_position on live events
    from authenticator.patches.finite_json import install as refuse_non_finite_json  # no NaN/Infinity in or out as JSON
    from authenticator.patches.protocol_errors import (
        install as one_line_per_protocol_error,  # the client's fault: no traceback
    )
    from authenticator.patches.server_identity import install as no_host_detail_over_http  # Server header, 404 pages

    guard = guard_this_process(warn)
    restore_recursion_limit()
    guard.apply("log-values", require_bounded_log_values)
    guard.apply("welcome-details", keep_crossbar_details_out_of_welcome)
    guard.apply("finite-json", refuse_non_finite_json)
    guard.apply("request-bodies", bound_request_bodies)
    guard.apply("protocol-errors", one_line_per_protocol_error)
    guard.apply("server-identity", no_host_detail_over_http)
    guard.apply("event-positions", install_event_details)
    guard.apply("debug-formatting", format_debug_values_only_when_logged)  # ~8-24 % of a worker's CPU
    return guard


def harden_proxy_worker(extra: Mapping) -> IResource:
    """Factory of a Crossbar ``resource`` web path: the one way to run our code in a proxy worker,
    which loads no component. The derived scale-out config (authenticator/config/proxy_profile.py) gives every
    proxy transport this path, named to sort before its WebSocket path: Crossbar builds a
    transport's paths in sorted order and listens after, so it holds before any client byte.

    ``{"type": "resource", "classname": "authenticator.patches.hardening.harden_proxy_worker", "extra":
    {"hello_timeout_seconds": 10, "request_bodies": {"publish": {"max_bytes": 65536, "error":
    "wamp.error.invalid_argument"}, "auth": {"max_bytes": 4096}}, "trusted_proxies": ["127.0.0.1"]}}``:
    the bodies of the paths the proxy forwards to the router worker are bounded as the router
    bounds them (every other path by authenticator/patches/body_limit.py's own rules), and refusals name
    the client behind ``trusted_proxies``. The path itself answers 404.
    """
    from twisted.logger import Logger
    from twisted.web.pages import notFound

    from authenticator.patches import body_limit
    from authenticator.patches.event_positions import install_event_details
    from authenticator.patches.hello_timeout import DEFAULT_HELLO_TIMEOUT_SECONDS, install_hello_timeout
    from authenticator.patches.protocol_errors import install_proxy_frontend as one_line_per_proxy_protocol_error
    from authenticator.patches.proxy_node_key import install as read_the_node_key_once

    log = Logger()
    guard = harden_router_worker(lambda message: log.warn(message))
    hello_timeout = extra.get("hello_timeout_seconds", DEFAULT_HELLO_TIMEOUT_SECONDS)
    guard.apply("hello-timeout", install_hello_timeout, hello_timeout)
    guard.apply("proxy-protocol-errors", one_line_per_proxy_protocol_error)  # its frontend's Deferred
    guard.apply("event-positions", install_event_details, passthrough=True)  # keep the router's x_position
    guard.apply("proxy-node-key", read_the_node_key_once)  # not twice per client session, with a QR code
    for path, bound in (extra.get("request_bodies") or {}).items():  # the paths forwarded to the router
        body_limit.declare_path(path, bound["max_bytes"], error=bound.get("error"))
    body_limit.trust_forwarded_for(extra.get("trusted_proxies") or ())
    return notFound()


def restore_recursion_limit() -> int:
    for name in _RAISES_THE_LIMIT:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    sys.setrecursionlimit(RECURSION_LIMIT)
    return sys.getrecursionlimit()
