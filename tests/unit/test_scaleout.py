"""The derived scale-out config and the pieces that keep sessions right behind proxies."""

import json

import pytest

from authenticator.config.production_profile import production_config
from authenticator.config.proxy_profile import HARDENING_PATH, PROXY_AUTHENTICATOR_ROLE, proxy_config
from authenticator.patches.hello_timeout import DEFAULT_HELLO_TIMEOUT_SECONDS
from authenticator.server.store import _announcement
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
        assert hook["classname"] == "authenticator.patches.hardening.harden_proxy_worker"
        assert hook["extra"] == {"hello_timeout_seconds": 3, "request_bodies": FORWARDED_BODIES}
        assert HARDENING_PATH < "ws"  # Crossbar starts paths in sorted order: the hook first
    default = proxy_config(SHIPPED, proxies=1)["workers"][1]["transports"][0]["paths"][HARDENING_PATH]
    assert default["extra"] == {
        "hello_timeout_seconds": DEFAULT_HELLO_TIMEOUT_SECONDS,
        "request_bodies": FORWARDED_BODIES,
    }


# The bodies of the forwarded paths are bounded in the proxies as the router worker bounds them:
# HTTP publishing's max_body_bytes (with its error URI), the demo issuer's issuer.max_body_bytes.
FORWARDED_BODIES = {
    "publish": {"max_bytes": 65536, "error": "wamp.error.invalid_argument"},
    "auth": {"max_bytes": 4096},
}


def test_the_proxies_bound_forwarded_bodies_as_the_router_worker_declares_them():
    config = json.loads(json.dumps(SHIPPED))
    router = config["workers"][0]
    router["transports"][0]["paths"]["publish"]["extra"]["max_body_bytes"] = 1000
    router["components"][0]["extra"]["issuer"]["max_body_bytes"] = 300
    hook = proxy_config(config, proxies=1)["workers"][1]["transports"][0]["paths"][HARDENING_PATH]
    assert hook["extra"]["request_bodies"] == {
        "publish": {"max_bytes": 1000, "error": "wamp.error.invalid_argument"}, "auth": {"max_bytes": 300},
    }  # fmt: skip
    # the issuer's default when its extra leaves it out
    del router["components"][0]["extra"]["issuer"]["max_body_bytes"]
    hook = proxy_config(config, proxies=1)["workers"][1]["transports"][0]["paths"][HARDENING_PATH]
    assert hook["extra"]["request_bodies"]["auth"] == {"max_bytes": 4096}
    assert "trusted_proxies" not in hook["extra"]  # the demo trusts no proxy


def exposed(config: dict) -> dict[tuple[str, object], set[str]]:
    """(interface, port) -> the path names some worker serves there (the proxies' hardening path,
    which answers 404, left out)."""
    found: dict = {}
    for worker in config["workers"]:
        for transport in worker.get("transports", []):
            endpoint = transport["endpoint"]
            if transport.get("type") == "web":
                names = set(transport["paths"]) - {HARDENING_PATH}
                found.setdefault((endpoint.get("interface"), endpoint.get("port")), set()).update(names)
    return found


def assert_no_wider(source: dict, derived: dict, internal_port: int) -> None:
    before, after = exposed(source), exposed(derived)
    for place, names in after.items():
        if place == ("127.0.0.1", internal_port):  # new, loopback only: the router paths of the public ports
            assert names - {"/"} <= set().union(*before.values()), names
            continue
        assert place in before, f"the derivation listens on {place}, which the source did not"
        assert names <= before[place], f"{place}: {sorted(names - before[place])} added"


def test_the_derivation_never_puts_a_path_on_a_port_that_did_not_serve_it():
    """An operator moved /metrics and /auth to a loopback transport of their own: the proxies must
    not bring them back to the public port (finding 8 of issue 20)."""
    config = json.loads(json.dumps(SHIPPED))
    router = config["workers"][0]
    public = router["transports"][0]
    public["endpoint"]["interface"] = "0.0.0.0"  # noqa: S104 - the public port of the example
    moved = {name: public["paths"].pop(name) for name in ("metrics", "auth")}
    internal = {"type": "web", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": 9464},
                "paths": {"/": {"type": "json", "value": {}}, **moved}}  # fmt: skip
    router["transports"].append(internal)
    derived = proxy_config(config, proxies=2, internal_port=8081)
    assert_no_wider(config, derived, 8081)
    for proxy in derived["workers"][1:]:
        assert [set(t["paths"]) for t in proxy["transports"]] == [{"/", "ws", "publish", HARDENING_PATH}]
        assert set(proxy["transports"][0]["paths"][HARDENING_PATH]["extra"]["request_bodies"]) == {"publish"}
    # the loopback transport stays on the router worker, as it was
    assert derived["workers"][0]["transports"][-1] == internal
    # and the shipped one: same ports, same paths
    assert_no_wider(SHIPPED, proxy_config(SHIPPED, proxies=2, internal_port=8081), 8081)


def test_proxies_derived_from_the_production_profile_keep_metrics_off_the_public_port():
    production = production_config(SHIPPED)
    derived = proxy_config(production, proxies=2, internal_port=8081)
    assert_no_wider(production, derived, 8081)
    public_port = production["workers"][0]["transports"][0]["endpoint"]["port"]
    for proxy in derived["workers"][1:]:
        for transport in proxy["transports"]:
            assert transport["endpoint"]["port"] == public_port
            assert not {"metrics", "auth"} & set(transport["paths"])
            extra = transport["paths"][HARDENING_PATH]["extra"]
            assert extra["trusted_proxies"] == ["127.0.0.1", "::1"]  # the refusal lines name the client
    metrics = [t for t in derived["workers"][0]["transports"] if t.get("id") == "metrics"]
    assert metrics == [t for t in production["workers"][0]["transports"] if t.get("id") == "metrics"]
    assert metrics[0]["endpoint"]["interface"] == "127.0.0.1"


def test_a_path_name_two_public_transports_use_for_different_services_is_refused():
    config = json.loads(json.dumps(SHIPPED))
    second = json.loads(json.dumps(config["workers"][0]["transports"][0]))
    second["endpoint"]["port"] = 8443
    second["paths"]["auth"]["module"] = "other.app"
    config["workers"][0]["transports"].append(second)
    with pytest.raises(ValueError, match="'auth' is a different service"):
        proxy_config(config, proxies=1)


@pytest.mark.parametrize("derive", [
    lambda c: proxy_config(c, proxies=2),
    production_config,
    lambda c: proxy_config(production_config(c), proxies=1),
], ids=["proxies", "production", "production-proxies"])  # fmt: skip
def test_derived_configs_keep_the_websocket_options_of_the_source(derive):
    """Whatever the source's WebSocket path says (its status page off, its limits) every derived
    WebSocket path says too."""
    config = json.loads(json.dumps(SHIPPED))
    options = config["workers"][0]["transports"][0]["paths"]["ws"]["options"]
    options["enable_webstatus"] = False
    derived = derive(config)
    websockets = [path for worker in derived["workers"] for transport in worker.get("transports", [])
                  for path in transport.get("paths", {}).values() if path.get("type") == "websocket"]  # fmt: skip
    assert websockets
    for path in websockets:
        assert path["options"]["enable_webstatus"] is False
        assert {k: v for k, v in path["options"].items() if k in options} == options


@pytest.mark.parametrize("derive", [
    lambda c: c,
    lambda c: proxy_config(c, proxies=2),
    production_config,
    lambda c: proxy_config(production_config(c), proxies=1),
], ids=["shipped", "proxies", "production", "production-proxies"])  # fmt: skip
def test_every_public_websocket_port_queues_a_restarts_reconnecting_clients(derive):
    """Crossbar listens with a backlog of 50: after a restart, connects beyond it are dropped by the
    kernel and wait for TCP's retransmission (1, 3, 7 ... 63 s), whatever the kits' backoff
    (bench/restart.py measured 60-120 s until every client was back, 10.5 s with 1024)."""
    derived = derive(json.loads(json.dumps(SHIPPED)))
    public = [transport["endpoint"] for worker in derived["workers"] for transport in worker.get("transports", [])
              if any(p.get("type") == "websocket" for p in transport.get("paths", {}).values())
              and transport["endpoint"]["type"] == "tcp"]  # fmt: skip
    assert public and all(endpoint.get("backlog", 50) >= 1024 for endpoint in public), public


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
