"""The derived scale-out config and the pieces that keep sessions right behind proxies."""

import json

import pytest

from authenticator.hello_timeout import DEFAULT_HELLO_TIMEOUT_SECONDS
from authenticator.scaleout import HARDENING_PATH, PROXY_AUTHENTICATOR_ROLE, proxy_config
from authenticator.store import _announcement
from tests.support.router import REPO

SHIPPED = json.loads((REPO / ".crossbar" / "config.json").read_text())


def test_proxies_share_the_public_port_and_authenticate_with_the_proxy_role():
    config = proxy_config(SHIPPED, proxies=3)
    proxies = [w for w in config["workers"] if w["type"] == "proxy"]
    assert [p["id"] for p in proxies] == ["proxy1", "proxy2", "proxy3"]
    for proxy in proxies:
        web = proxy["transports"][0]
        assert web["endpoint"]["shared"] is True and web["endpoint"]["port"] == 8080
        assert web["paths"]["ws"]["auth"]["ticket"]["authenticator-role"] == PROXY_AUTHENTICATOR_ROLE
        assert web["paths"]["auth"]["type"] == "reverseproxy"
        client_roles = {r["name"] for r in SHIPPED["workers"][0]["realms"][0]["roles"]} - {"authenticator"}
        assert set(proxy["routes"]["realm1"]) == client_roles | {PROXY_AUTHENTICATOR_ROLE}


def test_the_router_keeps_authorization_and_listens_only_on_loopback_and_a_unix_socket():
    router = proxy_config(SHIPPED, proxies=1)["workers"][0]
    kinds = {(t["type"], t["endpoint"]["type"], t["endpoint"].get("interface")) for t in router["transports"]}
    assert kinds == {("rawsocket", "unix", None), ("web", "tcp", "127.0.0.1")}
    assert router["components"][0]["extra"]["session"]["behind_proxies"] is True
    roles = {r["name"]: r for r in router["realms"][0]["roles"]}
    assert roles["user"]["authorizer"] == "authenticator.authorize"
    assert SHIPPED["workers"][0]["transports"][0]["endpoint"].get("shared") is None  # the input is not changed


def test_proxies_get_the_routers_transport_limits_and_the_hello_timeout():
    config = json.loads(json.dumps(SHIPPED))
    config["workers"][0]["components"][0]["extra"]["limits"] = {"hello_timeout_seconds": 3}
    shipped_web = SHIPPED["workers"][0]["transports"][0]
    for proxy in [w for w in proxy_config(config, proxies=2)["workers"] if w["type"] == "proxy"]:
        web = proxy["transports"][0]
        assert web["options"] == shipped_web["options"]
        assert web["paths"]["ws"]["serializers"] == ["json"]
        assert web["paths"]["ws"]["options"] == shipped_web["paths"]["ws"]["options"]
        hook = web["paths"][HARDENING_PATH]
        assert hook["classname"] == "authenticator.hardening.harden_proxy_worker"
        assert hook["extra"] == {"hello_timeout_seconds": 3, "max_request_body_bytes": {"publish": 65536}}
        assert HARDENING_PATH < "ws"  # Crossbar starts paths in sorted order: the hook first
    default = proxy_config(SHIPPED, proxies=1)["workers"][1]["transports"][0]["paths"][HARDENING_PATH]
    assert default["extra"] == {
        "hello_timeout_seconds": DEFAULT_HELLO_TIMEOUT_SECONDS,
        "max_request_body_bytes": {"publish": 65536},
    }


def test_zero_proxies_is_refused():
    with pytest.raises(ValueError):
        proxy_config(SHIPPED, proxies=0)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({b"authid": b"bob", b"jti": b""}, ("bob", None)),
        ({b"authid": b"", b"jti": b"j1"}, (None, "j1")),
        ({b"authid": b"", b"jti": b""}, None),
        ({b"other": b"x"}, None),
        ({b"authid": b"\xff"}, None),
    ],
)
def test_revocation_stream_entries_are_read_strictly(fields, expected):
    assert _announcement(fields) == expected
