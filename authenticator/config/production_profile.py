"""The production node configuration, derived from the demo one (.crossbar/config.json) so that keys,
claims and policy have one source and cannot drift.

What it changes, each a production decision (docs/operations.md, "Production checklist"):

- no demo: no login at /auth (users with printed passwords), no demo page at / (a static directory
  only if the operator names one), no anonymous role (a WebSocket without a token is refused);
- keys only from an explicit source: the component's ``generate_secret`` is false, so a start
  without JWT_SECRET (or the key file / JWKS the operator configures) stops with one line instead
  of generating a development secret;
- ``allowed_origins`` on the WebSocket (cross-site WebSocket hijacking), and no ``null`` origin;
  the same origins for the cookie carrier;
- /metrics on a transport of its own, loopback only, not on the public port;
- a node id of its own (Crossbar's default is the host name and pid);
- no status page on the WebSocket path (``enable_webstatus``: Crossbar answers a plain
  ``GET /ws`` with its exact version and the worker's pid, and redirects ``?redirect=`` anywhere);
- a GOODBYE (``wamp.close.system_shutdown``) to every client when the router stops
  (``session.goodbye_on_stop``): the client kits reconnect; plain AutobahnJS would not;
- behind a reverse proxy (nginx): the public transport listens on loopback and the component
  takes X-Forwarded-For from the proxy's address only (``trusted_proxies``); with ``tls`` the
  transport terminates TLS itself (Crossbar 26: TLS 1.3 only) with the certificate files named.

    python -m authenticator production-config --origin https://app.example.com > .crossbar/config-production.json
    JWT_SECRET=... crossbar start --cbdir .crossbar --config config-production.json --loglevel warn
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from authenticator.config.node_config import with_current_paths
from authenticator.contract import COMPONENT_CLASSES

NODE_ID = "crossbar_jwt"  # Crossbar: ^[a-z][a-z0-9_]{2,63}$
METRICS_PORT = 9464  # loopback only
DEMO_ORIGINS = ("https://app.example.com",)
DEFAULT_PORTS = {"https": 443, "http": 80}  # of an origin written without a port
# Nothing at / unless the operator names a directory (Crossbar needs a root path; "json" is not a
# leaf, so /ws and /publish stay reachable beside it).
ROOT = {"type": "json", "value": {}}


def crossbar_origin(origin: str) -> str:
    """An origin as Autobahn matches it: "scheme://host:port", the port always written. The port is
    the one given (https://app.example.com:8443); an origin without one means its scheme's default
    port, 443 for https and 80 for http, as in a browser's Origin header: a page served from
    https://app.example.com:8443 is not the origin https://app.example.com."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if (scheme not in DEFAULT_PORTS or not parts.hostname or port == 0 or parts.path not in ("", "/")
            or parts.query or parts.fragment or "@" in parts.netloc):  # fmt: skip
        raise ValueError(
            "an origin is scheme://host[:port], such as https://app.example.com (port 443) or "
            f"https://app.example.com:8443, not {origin!r}"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # Autobahn compares it lowercased
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def browser_origin(origin: str) -> str:
    """An origin as a browser's Origin header writes it: the default port left out."""
    normalized = crossbar_origin(origin)
    for default in ("https://", ":443"), ("http://", ":80"):
        if normalized.startswith(default[0]) and normalized.endswith(default[1]):
            return normalized[: -len(default[1])]
    return normalized


def options_of(config: dict) -> dict:
    """The production_config options a derived config was made with (for the drift check: an
    operator's own origins, port or TLS files are theirs; keys, claims and policy must not drift)."""
    router = config["workers"][0]
    public = router["transports"][0]
    endpoint = public["endpoint"]
    ws = next(p for p in public["paths"].values() if p.get("type") == "websocket")
    root = public["paths"].get("/", {})
    metrics = [t for t in router["transports"] if t.get("id") == "metrics"]
    extra = next(c for c in router.get("components", []) if c.get("classname") in COMPONENT_CLASSES)["extra"]
    return {
        "origins": tuple(browser_origin(o) for o in ws["options"]["allowed_origins"]),
        "port": endpoint["port"], "interface": endpoint["interface"], "tls": endpoint.get("tls"),
        "static_directory": root.get("directory") if root.get("type") == "static" else None,
        "metrics_port": metrics[0]["endpoint"]["port"] if metrics else METRICS_PORT,
        "trusted_proxies": tuple(extra.get("trusted_proxies", ())) or ("127.0.0.1", "::1"),
        "node_id": config["controller"]["id"],
    }  # fmt: skip


def production_config(
    config: dict,
    *,
    origins: tuple[str, ...] = DEMO_ORIGINS,
    port: int = 8080,
    interface: str = "127.0.0.1",
    tls: dict | None = None,
    static_directory: str | None = None,
    metrics_port: int = METRICS_PORT,
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1"),
    node_id: str = NODE_ID,
) -> dict:
    """The production node config of `config` (the demo node config, not changed)."""
    if not tls and not ipaddress.ip_address(interface).is_loopback:
        # Plain HTTP on a public interface: tokens in the clear, and X-Forwarded-For trusted from
        # loopback on a port the world reaches. Behind a proxy, listen on loopback.
        raise ValueError(f"interface {interface} is not loopback: give a TLS key and certificate, or keep 127.0.0.1 "
                         "behind a reverse proxy")  # fmt: skip
    config = with_current_paths(config)  # a copy; a 0.1 config derives as a current one
    config["controller"] = {**config.get("controller", {}), "id": node_id}
    router = config["workers"][0]
    public = router["transports"][0]
    paths = public["paths"]
    metrics = paths.pop("metrics", None)
    paths.pop("auth", None)  # the demo login
    paths["/"] = {"type": "static", "directory": static_directory} if static_directory else ROOT
    endpoint = {"type": "tcp", "interface": interface, "port": port}
    if "backlog" in public["endpoint"]:  # the listen queue a restart's reconnecting clients need (docs/scaling.md)
        endpoint["backlog"] = public["endpoint"]["backlog"]
    if tls:
        endpoint["tls"] = dict(tls)
    public["endpoint"] = endpoint
    for path in paths.values():
        if path.get("type") == "websocket":
            options = path.setdefault("options", {})
            options["allowed_origins"] = [crossbar_origin(o) for o in origins]
            options["allow_null_origin"] = False
            options["enable_webstatus"] = False  # GET /ws: no status page with Crossbar's version and the pid
    if metrics is not None:
        router["transports"].append({
            "type": "web", "id": "metrics",
            "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": metrics_port},
            "paths": {"/": ROOT, "metrics": metrics},
        })  # fmt: skip
    for component in router.get("components", []):
        if component.get("classname") not in COMPONENT_CLASSES:
            continue
        extra = component.setdefault("extra", {})
        extra.pop("issuer", None)
        extra["generate_secret"] = False
        extra["anonymous_role"] = None
        extra["trusted_proxies"] = list(trusted_proxies) if not tls else []
        extra.setdefault("session", {})["goodbye_on_stop"] = True  # the kits reconnect after it
        if extra.get("cookie"):
            # the carrier compares the Origin header as browsers send it: no default port, no slash
            extra["cookie"]["allowed_origins"] = [browser_origin(o) for o in origins]
        for key in extra.get("keys", []):
            if key.get("secret_file") == "jwt-secret.key":
                key.pop("secret_file")  # the demo's generated secret: production names its own source
    return config
