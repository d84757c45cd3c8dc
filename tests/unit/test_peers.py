"""The client's address behind trusted proxies (authenticator/core/peer_address.py)."""

import pytest

from authenticator.core.peer_address import client_address, host_of

NGINX = frozenset({"127.0.0.1", "::1"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("tcp4:127.0.0.1:5000", "203.0.113.9", "203.0.113.9 (via tcp4:127.0.0.1:5000)"),
        # the client's own header comes first; nginx appends the address it saw
        ("tcp4:127.0.0.1:5000", "6.6.6.6, 203.0.113.9", "203.0.113.9 (via tcp4:127.0.0.1:5000)"),
        # a chain of trusted proxies is walked from the right
        ("tcp4:127.0.0.1:5000", "203.0.113.9, ::1", "203.0.113.9 (via tcp4:127.0.0.1:5000)"),
        # not from a trusted proxy: the header is the client's own words
        ("tcp4:198.51.100.7:5000", "203.0.113.9", "tcp4:198.51.100.7:5000"),
        # garbage stops the walk: nothing left of it is believed
        ("tcp4:127.0.0.1:5000", "203.0.113.9, <script>", "tcp4:127.0.0.1:5000"),
        ("tcp4:127.0.0.1:5000", None, "tcp4:127.0.0.1:5000"),
        ("tcp6:::1:5000", "2001:db8::5", "2001:db8::5 (via tcp6:::1:5000)"),
        ("127.0.0.1:5000", "203.0.113.9", "203.0.113.9 (via 127.0.0.1:5000)"),  # Twisted Web's form
    ],
)
def test_the_right_most_untrusted_address_from_a_trusted_proxy(peer, forwarded, expected):
    assert client_address(peer, forwarded, NGINX) == expected


def test_a_long_header_is_read_from_its_tail_and_scope_ids_are_not_addresses():
    # a client pads its own entries so that a head-first cut would drop the proxy's real one
    padded = "1.1.1.1," + " " * (1024 - len("1.1.1.1,") - len("6.6.6.6")) + "6.6.6.6"
    assert client_address("tcp4:127.0.0.1:1", padded + ", 203.0.113.9", NGINX) == "203.0.113.9 (via tcp4:127.0.0.1:1)"
    assert (
        client_address("tcp4:127.0.0.1:1", "x" * 5000 + ",203.0.113.9", NGINX) == "203.0.113.9 (via tcp4:127.0.0.1:1)"
    )
    forged = "fe80::1%x detail=ok authid=root"
    assert client_address("tcp4:127.0.0.1:1", forged, NGINX) == "tcp4:127.0.0.1:1"


def test_without_trusted_proxies_the_header_is_never_read():
    assert client_address("tcp4:127.0.0.1:5000", "203.0.113.9", frozenset()) == "tcp4:127.0.0.1:5000"


def test_hosts_of_crossbar_peers():
    assert host_of("tcp4:127.0.0.1:35994") == "127.0.0.1"
    assert host_of("tcp6:::1:4000") == "::1"
    assert host_of("unix:/tmp/x") is None and host_of(None) is None
