"""The scale-out node configuration, derived from the single-worker one so the two cannot drift.

Crossbar's own scale-out: N proxy workers share the public port (``"shared": true``) and run
the WebSocket transport and authentication; the one router worker keeps the realm, the
authenticator component and authorization. The proxies reach the router over a Unix socket with
WAMP-anonymous-proxy (the router trusts what its local proxies authenticated).

Crossbar 26's proxy workers cannot host ``wsgi`` paths (the demo issuer at /auth, /metrics), and
HTTP publishing (/publish) must run where the realm is: the router worker keeps these paths on a
loopback-only web transport (``internal_port``) and the proxies forward them to it with
Crossbar's ``reverseproxy`` path service.

A derivation never widens what the source exposes: only the transports that carry a WebSocket
move to the proxies, each forwarding only the router paths it had itself; a transport without a
WebSocket (the production profile's loopback-only /metrics) stays on the router worker as it is,
and the internal transport serves nothing at / (no static directory the source did not serve).

The proxies load no component: each proxy transport gets a ``resource`` path that hardens its
worker as the component hardens the router worker (authenticator/patches/hardening.py: recursion limit,
bounded log lines, no Crossbar details in WELCOME, request bodies bounded while they arrive) and
installs the HELLO timeout (authenticator/patches/hello_timeout.py) with the component's
``limits.hello_timeout_seconds``. The bodies of the paths it forwards get the bound the router
worker gives them (authenticator/patches/body_limit.py; HTTP publishing's ``max_body_bytes``, the demo
issuer's ``issuer.max_body_bytes``), and its refusal lines believe X-Forwarded-For from the
component's ``trusted_proxies``.

    python -m authenticator proxy-config --proxies 2 > .crossbar/config-proxies.json
    crossbar start --cbdir .crossbar --config config-proxies.json
"""

from __future__ import annotations

import copy

from authenticator.config.node_config import with_current_paths
from authenticator.config.settings import load_issuer_settings
from authenticator.contract import AUTHENTICATE, COMPONENT_CLASSES, ISSUER_MODULE, PROXY_HARDENING, PUBLISH_RESOURCE
from authenticator.core.publish_request import DEFAULT_MAX_BODY_BYTES, INVALID_ARGUMENT
from authenticator.core.settings import DEFAULT_HELLO_TIMEOUT_SECONDS

# The path that hardens a proxy worker; it must sort before the WebSocket path (see _hardened).
HARDENING_PATH = "hardening"
# The role of the proxies' service session that calls the dynamic authenticators in the router.
PROXY_AUTHENTICATOR_ROLE = "proxy-authenticator"
ROUTER_SOCKET = "router.sock"
BACKEND = "router"
INTERNAL_PORT = 8081  # loopback only: the router worker's own web transport for wsgi paths


def proxy_config(config: dict, proxies: int, internal_port: int = INTERNAL_PORT) -> dict:
    """The node config with `proxies` proxy workers in front of the router worker of `config`."""
    if proxies < 1:
        raise ValueError("at least one proxy worker")
    config = with_current_paths(config)  # a copy; a 0.1 config derives as a current one
    router = config["workers"][0]
    realms = router["realms"]  # one or several (tenants): each gets its routes and its proxy-authenticator role
    # The proxies take the transports that carry a WebSocket; the others stay where they are.
    public = [t for t in router["transports"] if not _without_websocket(t)]
    kept = [t for t in router["transports"] if _without_websocket(t)]
    router["transports"] = [
        {
            "type": "rawsocket",
            "endpoint": {"type": "unix", "path": ROUTER_SOCKET},
            "serializers": ["cbor"],
            "auth": {"anonymous-proxy": {"type": "static"}},
        }
    ]
    hosted = _router_paths(public)
    if hosted:
        router["transports"].append(
            {
                "type": "web",
                "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": internal_port},
                "paths": {"/": {"type": "json", "value": {}}, **hosted},
            }
        )
        for transport in public:
            public_port = transport["endpoint"].get("port")
            for name in [name for name in transport.get("paths", {}) if name in hosted]:  # its own, no other
                transport["paths"][name] = {
                    "type": "reverseproxy", "host": "127.0.0.1", "port": internal_port, "path": f"/{name}",
                    **({"forwarded_port": public_port} if isinstance(public_port, int) else {}),
                }  # fmt: skip
    router["transports"].extend(kept)
    for realm in realms:
        realm["roles"].append(_proxy_authenticator_role())
    hello_timeout, extra = DEFAULT_HELLO_TIMEOUT_SECONDS, {}
    for component in router.get("components", []):
        if component.get("classname") in COMPONENT_CLASSES:
            extra = component.setdefault("extra", {})
            extra.setdefault("session", {})["behind_proxies"] = True
            hello_timeout = extra.get("limits", {}).get("hello_timeout_seconds", hello_timeout)
    hardening = {"hello_timeout_seconds": hello_timeout, "request_bodies": _forwarded_bodies(hosted, extra)}
    if extra.get("trusted_proxies"):
        hardening["trusted_proxies"] = list(extra["trusted_proxies"])
    # Every role a client session can get, on every realm, must have a route to the router worker.
    routes = {
        realm["name"]: {r["name"]: [BACKEND] for r in realm["roles"] if r["name"] != "authenticator"}
        for realm in realms
    }
    for i in range(proxies):
        config["workers"].append(
            {
                "type": "proxy",
                "id": f"proxy{i + 1}",
                "options": copy.deepcopy(router.get("options", {})),
                "routes": copy.deepcopy(routes),
                "connections": {
                    BACKEND: {
                        "realm": realms[0]["name"],  # each client session's backend joins the client's own realm
                        "transport": {
                            "type": "rawsocket",
                            "endpoint": {"type": "unix", "path": ROUTER_SOCKET},
                            "serializer": "cbor",
                            "url": "rs://localhost",
                        },
                        "auth": {"anonymous-proxy": {"type": "static"}},
                    }
                },
                "transports": [_hardened(_shared(t), hardening) for t in copy.deepcopy(public)],
            }
        )
    return config


def _proxy_authenticator_role() -> dict:
    """The role of the proxies' service session on a realm: it may call the dynamic authenticators."""
    return {
        "name": PROXY_AUTHENTICATOR_ROLE,
        "permissions": [
            {
                "uri": AUTHENTICATE,
                "match": "prefix",  # authenticate and authenticate_headers
                "allow": {"call": True, "register": False, "publish": False, "subscribe": False},
                "disclose": {"caller": False, "publisher": False},
                "cache": True,
            }
        ],
    }


def _without_websocket(transport: dict) -> bool:
    """A web transport with no WebSocket path: nothing for the proxies to do there."""
    paths = transport.get("paths", {}).values()
    return transport.get("type") == "web" and not any(path.get("type") == "websocket" for path in paths)


def _router_paths(transports: list[dict]) -> dict:
    """The paths only the router worker can serve: wsgi apps, and HTTP publishing (it needs the realm).
    One internal transport hosts them all: a name the public transports use for two different
    paths is refused."""
    hosted: dict = {}
    for transport in transports:
        for name, path in transport.get("paths", {}).items():
            if path.get("type") != "wsgi" and path.get("classname") != PUBLISH_RESOURCE:
                continue
            if hosted.setdefault(name, copy.deepcopy(path)) != path:
                raise ValueError(f"the path {name!r} is a different service on two public transports: rename one")
    return hosted


def _forwarded_bodies(hosted: dict, component_extra: dict) -> dict:
    """The body bound of each forwarded path that declares one in the router worker (the rest get
    body_limit's default there and here): HTTP publishing's, and the demo issuer's."""
    bodies = {}
    for name, path in hosted.items():
        if path.get("classname") == PUBLISH_RESOURCE:
            limit = path.get("extra", {}).get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
            bodies[name] = {"max_bytes": limit, "error": INVALID_ARGUMENT}
        elif path.get("type") == "wsgi" and path.get("module") == ISSUER_MODULE:
            bodies[name] = {"max_bytes": load_issuer_settings(component_extra.get("issuer", {})).max_body_bytes}
    return bodies


def _shared(transport: dict) -> dict:
    transport["endpoint"]["shared"] = True  # every proxy accepts on the same port (SO_REUSEPORT)
    for path in transport.get("paths", {}).values():
        if path.get("type") == "websocket":  # GET /ws: no status page with Crossbar's version and the pid
            path.setdefault("options", {})["enable_webstatus"] = False
        for method in (path.get("auth") or {}).values():
            if method.get("type") == "dynamic":
                method["authenticator-role"] = PROXY_AUTHENTICATOR_ROLE
    return transport


def _hardened(transport: dict, extra: dict) -> dict:
    """A proxy's web transport with the path that hardens its worker (and installs the HELLO timeout
    and the request body bounds).

    Crossbar starts a transport's paths in sorted order: the name sorts before the WebSocket
    path's, so the worker is hardened before its first WebSocket connection.
    """
    paths = transport.get("paths", {})
    websockets = [name for name, path in paths.items() if path.get("type") == "websocket"]
    if websockets:
        if min(websockets) < HARDENING_PATH:
            raise ValueError(f"the WebSocket path {min(websockets)!r} would start before {HARDENING_PATH!r}: rename it")
        paths[HARDENING_PATH] = {
            "type": "resource",
            "classname": PROXY_HARDENING,
            "extra": {**extra, "request_bodies": {n: b for n, b in extra["request_bodies"].items() if n in paths}},
        }
    return transport
