"""Who a client is, by address, behind a reverse proxy: for log lines. Pure.

Behind nginx every connection comes from nginx. Its X-Forwarded-For names the client, but any
client can send that header too: it is believed only when the connection comes from an address
in ``trusted_proxies``, and then only up to the first hop that is not a trusted proxy (the
right-most untrusted address: entries left of it were written by the client). Crossbar has no
such option (Autobahn's ``trustXForwardedFor`` trusts a number of hops from any peer, and
Crossbar 26 does not pass it on), so Crossbar's own log lines keep the proxy's address.
"""

from __future__ import annotations

import ipaddress

MAX_HEADER_CHARS = 1024  # more hops than any real chain of proxies
MAX_HOPS = 8


def host_of(peer: str | None) -> str | None:
    """The IP address of a Crossbar peer ('tcp4:127.0.0.1:35994', 'tcp6:::1:4000') or 'host:port'."""
    if not peer:
        return None
    text = peer.split(":", 1)[1] if peer.startswith(("tcp4:", "tcp6:")) else peer
    host = text.rsplit(":", 1)[0] if ":" in text else text
    return _ip(host.strip("[]"))


def client_address(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str | None:
    """The client's address for a log line: the peer itself, or, when the peer is a trusted proxy,
    the right-most address of X-Forwarded-For that is not one (with the proxy named)."""
    if not trusted or not forwarded_for or host_of(peer) not in trusted:
        return peer
    # From the right: the proxy appended the address it saw last; whatever is left of it was
    # written by the client. So the tail is read (never the head), and a cut first hop ignored.
    hops = forwarded_for[-MAX_HEADER_CHARS:].split(",")
    if len(forwarded_for) > MAX_HEADER_CHARS:
        hops = hops[1:]
    for hop in reversed(hops[-MAX_HOPS:]):
        address = _ip(hop.strip())
        if address is None:
            return peer  # not an address: nothing after it can be believed either
        if address not in trusted:
            return f"{address} (via {peer})"
    return peer


def session_peer(details, trusted: frozenset[str]) -> str | None:
    """The client of a WAMP login for a log line, from the details Crossbar passes to a dynamic
    authenticator (its transport's peer and upgrade headers)."""
    transport = details.get("transport") or {}
    forwarded = (transport.get("http_headers_received") or {}).get("x-forwarded-for")
    return client_address(transport.get("peer"), forwarded if isinstance(forwarded, str) else None, trusted)


def request_peer(request, trusted: frozenset[str]) -> str:
    """The client of an HTTP request (a Twisted Web request) for a log line: its TCP peer, or
    behind a trusted proxy the client that X-Forwarded-For names, via the proxy."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    peer = f"{host}:{getattr(address, 'port', '')}" if host else str(address)
    forwarded = request.getHeader(b"x-forwarded-for")
    return client_address(peer, forwarded.decode("latin-1") if forwarded else None, trusted)


def _ip(text: str) -> str | None:
    """A plain IPv4 or IPv6 address, or None. No IPv6 scope id: ipaddress accepts any text after
    its '%', which would put client words into a log line."""
    if "%" in text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
