"""The demo token issuer: a Flask app that stands in for *your* web application's login.

Crossbar hosts it on the web transport (`"auth": {"type": "wsgi", ...}`), in a thread pool, so
the page and its token endpoint share an origin with the WebSocket. It signs with the same key
configuration as the authenticator.

    POST /auth/login   {"username", "password"} -> session cookie (HttpOnly, SameSite=Lax)
    POST /auth/logout
    GET  /auth/token   -> {"token", "exp"}: a short-lived JWT for the logged-in user, every call
    POST /auth/backend-publish {"user", "text"} (admins): the other path, as your backend would
                       take it: mint a `backend` token here, on the server, and POST /publish
    POST /auth/shares  {"doc", "user", "seconds"} (admins): share the document channel app.doc.<doc>
                       with one user for a while (authenticator/demo/shares.py)
    GET  /auth/shares  -> {"shares", "min_seconds", "max_seconds"}: the live shares with the logged-in user
    GET  /auth/shares/<doc>/token -> {"token", "exp", "expires_in", "topic"}: a grant token for a live
                       share: the user's authid, the one role "document-reader", `caps` naming the
                       document's topic, `exp` as a login token's but never past the share's end
                       (the page refreshes its document session with the next one; 404 once it ended)

It runs inside the router worker: whatever it parses or computes is the router's to pay. A body
over `max_body_bytes` is answered 413 unread (the app declares the bound to
authenticator/patches/body_limit.py, which refuses it while it arrives, before Twisted keeps a byte), one
that is not a small JSON object 400, and each client address gets `login_attempts_per_minute`
logins (429 and Retry-After past that).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

from flask import Flask, jsonify, request, session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.security import check_password_hash

from authenticator.config.key_files import load_hmac_secret
from authenticator.config.node_config import (
    authenticator_component,
    authenticator_realms,
    crossbar_config_file,
    find_components,
    load_node_config,
    running_config_file,
)
from authenticator.config.settings import load_issuer_settings, load_settings
from authenticator.core.json_guard import nesting_exceeds
from authenticator.core.minting import realm_binding, user_claims
from authenticator.demo.shares import (
    DOC_ID,
    GRANT_ROLE,
    SEND_SHARE,
    ShareBook,
    ShareRefused,
    read_share_request,
)

# Checked against when a username is unknown, so both paths cost one hash check (no user probing).
_DUMMY_HASH = "scrypt:32768:8:1$0000000000000000$" + "0" * 128
# A login body is one flat object. The depth is counted before json.loads, which recurses once per
# level: the router worker runs with a raised recursion limit, where deep nesting overflows the C
# stack and kills the whole node instead of raising RecursionError.
MAX_JSON_DEPTH = 4
SEND = 'Send a JSON object {"username": "...", "password": "..."} with Content-Type: application/json.'
# The advice of a 413 (any path of the app): what each path that takes a body expects.
SEND_SMALL = f'{SEND} A share (POST /auth/shares): {{"doc": "42", "user": "alice", "seconds": 300}}.'


class LoginLimiter:
    """A token bucket per client address: `per_minute` attempts at once, refilled at `per_minute`
    a minute. The table holds at most `max_addresses` buckets; the least recently seen is dropped
    first (a dropped address starts again with a full bucket)."""

    def __init__(self, per_minute: int, max_addresses: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)
        self._lock = threading.Lock()  # Crossbar runs the app on a thread pool

    def attempt(self, address: str) -> float:
        """0 if an attempt from `address` may go ahead (it is counted), else the seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(address, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.per_second)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.per_second
            self._buckets[address] = (tokens - 1 if tokens >= 1 else tokens, now)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
            return wait


def login_bucket(environ: Mapping, direct_ports: frozenset[int] | None) -> str:
    """The address a login attempt counts against: the TCP peer, except behind our proxy workers.

    There (authenticator/config/proxy_profile.py) the proxies forward /auth with Crossbar's `reverseproxy` to
    the router worker's loopback-only web transport, so every peer is 127.0.0.1: one bucket for
    every client, which one client could empty for all. That reverseproxy *replaces* any
    X-Forwarded-For with the address it accepted the connection from (crossbar/webservice/base.py),
    so it is then one address we can use. It is read only when the peer is loopback and the
    request did not come in on a public port of the node config (`direct_ports`: the proxies' ports
    behind our proxies; None: unknown, never read it): a client of the single-worker node reaches
    the issuer on its public port and cannot pick its bucket with the header; only a process on
    this host can reach the internal port without our proxies. Behind a reverse proxy of your own
    in front of the single-worker node, every client shares the proxy's address.
    """
    peer = environ.get("REMOTE_ADDR") or "unknown"
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    via_our_proxies = direct_ports is not None and _port(environ.get("SERVER_PORT")) not in direct_ports
    if forwarded and via_our_proxies and _is_loopback(peer):
        nearest = forwarded.rsplit(",", 1)[-1].strip()  # the entry our proxy added
        if _ip(nearest) is not None:
            return _bucket(nearest)
    return _bucket(peer)


def _bucket(address: str) -> str:
    ip = _ip(address)
    if ip is None:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        # One IPv6 host usually holds a whole /64: count the network, or every address is a bucket.
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_loopback(address: str) -> bool:
    ip = _ip(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip is not None and ip.is_loopback


def _port(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def public_ports(config: Mapping) -> frozenset[int] | None:
    """The TCP ports of the web transports in a node config (`"$VAR"` read from the environment, as
    Crossbar does); None if there is none or one cannot be read: then X-Forwarded-For is never used."""
    ports = set()
    workers = config.get("workers", [])  # a list of objects: load_node_config checked its shape
    # Behind our proxy workers (config/proxy_profile.py) clients connect to the proxies; the
    # router worker's own web transport is the internal one they forward /auth to.
    proxies = [w for w in workers if w.get("type") == "proxy"]
    for worker in proxies or workers:
        for transport in worker.get("transports", []):
            endpoint = transport.get("endpoint", {})
            if transport.get("type") != "web" or endpoint.get("type") != "tcp":
                continue
            port = endpoint.get("port")
            if isinstance(port, str) and re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", port):
                port = _port(os.environ.get(port[1:]))
            if not isinstance(port, int):
                return None
            ports.add(port)
    return frozenset(ports) or None


def login_body(data: bytes) -> dict | None:
    """The JSON object in a login body, or None when it is not one (bad UTF-8 or JSON, too deep)."""
    try:
        if nesting_exceeds(data, MAX_JSON_DEPTH):
            return None
        body = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError is not a ValueError
        return None
    return body if isinstance(body, dict) else None


def create_app(cbdir: Path, config_file: Path | None = None) -> Flask:
    # The node config the router was started with (crossbar start --config), else Crossbar's choice.
    config_file = config_file or running_config_file(cbdir) or crossbar_config_file(cbdir)
    node = load_node_config(config_file)  # read once: the component's extra and the public ports
    # Several realms: the demo issuer mints for the realm whose component has the "issuer" entry.
    components = [found[3] for found in find_components(node)] or [authenticator_component(node, config_file)]
    component = next((c for c in components if "issuer" in (c.get("extra") or {})), components[0])
    extra = dict(component.get("extra", {}))
    limits = load_issuer_settings(extra.pop("issuer", {}))
    settings = load_settings(extra, cbdir, realm=component.get("realm"), node_realms=authenticator_realms(node))
    for_realm = realm_binding(settings.claims)  # the claim that names the realm, if the node has several
    key = settings.keys.signing_key()
    users = json.loads((cbdir / limits.users_file).read_text(encoding="utf-8"))
    ttl = limits.token_ttl_seconds
    cookie_name = settings.cookie.name if settings.cookie else None
    limiter = LoginLimiter(limits.login_attempts_per_minute, limits.login_tracked_addresses)
    shares = ShareBook(limits.max_shares)
    caps_claim = settings.claims.caps_claim  # the claim a grant token lists its grants in
    direct_ports = public_ports(node)

    app = Flask(__name__)
    app.secret_key, _, _ = load_hmac_secret("ISSUER_SESSION_SECRET", cbdir / "issuer-session.key", generate=True)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="session",
        MAX_CONTENT_LENGTH=limits.max_body_bytes,  # the same bound, should a body reach the app
    )  # fmt: skip
    # Declared to authenticator/patches/body_limit.py: bodies over it are refused 413 while they arrive.
    app.max_body_bytes, app.too_large_advice = limits.max_body_bytes, SEND_SMALL

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error):
        return jsonify(error=f"The request body is larger than {limits.max_body_bytes} bytes. {SEND_SMALL}"), 413

    @app.post("/login")
    def login():
        # Only a JSON content type: a cross-site form cannot send one without a CORS preflight, so
        # another site cannot log a visitor in to an account of its choosing (login CSRF).
        body = login_body(request.get_data(cache=False)) if request.is_json else None
        if body is None:
            return jsonify(error=f"The body is not a JSON object of the expected shape. {SEND}"), 400
        # Counted before the password is checked, right or wrong: each check costs an scrypt hash
        # (~0.1 s, 32 MiB) of the router's process, and a limit that let a right password through
        # would still tell a guesser when a guess is right.
        wait = limiter.attempt(login_bucket(request.environ, direct_ports))
        if wait:
            seconds = math.ceil(wait)
            response = jsonify(error=f"Too many login attempts from your address. Try again in {seconds} s.",
                               retry_after=seconds)  # fmt: skip
            response.headers["Retry-After"] = str(seconds)
            return response, 429
        username, password = body.get("username"), body.get("password")
        user = users.get(username) if isinstance(username, str) else None
        valid = check_password_hash(user["password_hash"] if user else _DUMMY_HASH, str(password or ""))
        if not (user and valid):
            return jsonify(error="Wrong username or password. The demo users are in the README."), 401
        session.clear()
        session["authid"] = username
        return jsonify(authid=username, roles=user["roles"])

    @app.post("/logout")
    def logout():
        session.clear()
        response = jsonify(ok=True)
        if cookie_name:
            response.delete_cookie(cookie_name)
        return response

    @app.get("/me")
    def me():
        authid = session.get("authid")
        if authid not in users:
            return jsonify(authid=None, roles=[])
        return jsonify(authid=authid, roles=users[authid]["roles"])

    @app.get("/token")
    def token():
        authid = session.get("authid")
        if authid not in users:
            return jsonify(error="Not logged in: POST /auth/login first."), 401
        claims = {**user_claims(authid, users[authid]["roles"], ttl), **for_realm}
        encoded = key.sign(claims)
        response = jsonify(token=encoded, exp=claims["exp"])
        response.headers["Cache-Control"] = "no-store"
        if cookie_name:  # for clients that carry the token in the cookie instead of the ticket
            response.set_cookie(cookie_name, encoded, max_age=ttl, httponly=True, samesite="Strict")
        return response

    @app.post("/backend-publish")
    def backend_publish():
        """The demo's "from the backend" button: what a PHP or Django backend does after an event."""
        authid = session.get("authid")
        if authid not in users or "admin" not in users[authid]["roles"]:
            return jsonify(error="Only a logged-in admin may publish from the demo backend."), 403
        body = login_body(request.get_data(cache=False)) if request.is_json else None  # JSON only: no CSRF
        if body is None or not all(isinstance(body.get(k), str) and body[k] for k in ("user", "text")):
            return jsonify(error='Send {"user": "...", "text": "..."} as JSON.'), 400
        token = key.sign({**user_claims("demo-backend", ["backend"], 30), **for_realm})
        publication = {"topic": f"app.user.{body['user']}.notifications", "args": [body["text"]]}
        # The router's own port, as seen by this request (behind proxies: the router worker's).
        url = f"http://127.0.0.1:{request.environ['SERVER_PORT']}/publish"
        status, answer = _post_json(url, publication, token)
        return jsonify(status=status, answer=answer), 200 if status == 200 else 502

    def logged_in() -> str | None:
        authid = session.get("authid")
        return authid if authid in users else None

    @app.get("/shares")
    def live_shares():
        authid = logged_in()
        if authid is None:
            return jsonify(error="Not logged in: POST /auth/login first."), 401
        answer = jsonify(shares=[share.as_json() for share in shares.live_for(authid)],
                         min_seconds=limits.share_min_seconds, max_seconds=limits.share_max_seconds)  # fmt: skip
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @app.post("/shares")
    def share_document():
        """The admin shares app.doc.<doc> with one user for `seconds`: that user may then fetch a grant token."""
        authid = logged_in()
        if authid is None or "admin" not in users[authid]["roles"]:
            return jsonify(error="Only a logged-in admin may share a document: log in as an admin (root)."), 403
        body = login_body(request.get_data(cache=False)) if request.is_json else None  # JSON only: no CSRF
        if body is None:
            return jsonify(error=f"The body is not a JSON object. {SEND_SHARE}"), 400
        try:
            doc, user, seconds = read_share_request(body, users, limits.share_min_seconds, limits.share_max_seconds)
            share = shares.add(doc, user, authid, seconds)
        except ShareRefused as refused:
            answer = jsonify(error=refused.message)
            if refused.retry_after is not None:
                answer.headers["Retry-After"] = str(refused.retry_after)
            return answer, refused.status
        return jsonify(share.as_json())

    @app.get("/shares/<doc>/token")
    def grant_token(doc: str):
        """The logged-in user's grant token for a live share: the role GRANT_ROLE only (never the
        user's roles: the token opens that document, not a login), `caps` naming the document's
        topic only, and a login token's short life, never past the share's end. The page fetches
        the next one before exp and refreshes its session with it (the same roles and caps, so the
        router accepts it); once the share has ended this answers 404, the page stops refreshing,
        and the router ends the session at the last token's exp. Minted tokens stay valid until
        their exp: a shorter life is what bounds a share that is not renewed."""
        authid = logged_in()
        if authid is None:
            return jsonify(error="Not logged in: POST /auth/login first."), 401
        share = shares.find(doc, authid) if DOC_ID.fullmatch(doc) else None
        now = time.time()
        exp = share.grant_exp(ttl, now) if share else None
        if exp is None:
            return jsonify(error="No live share of this document with you: it has ended or was never shared. "
                                 "Ask the admin to share it (again)."), 404  # fmt: skip
        claims = {**user_claims(authid, [GRANT_ROLE], ttl, now=now), **for_realm}
        claims["exp"] = exp
        claims[caps_claim] = share.caps()
        answer = jsonify(token=key.sign(claims), exp=exp, expires_in=round(exp - now, 3), topic=share.topic)
        answer.headers["Cache-Control"] = "no-store"
        return answer

    return app


def _post_json(url: str, body: dict, token: str) -> tuple[int, dict]:
    """On the wsgi thread pool, never the reactor: the router answers this request meanwhile."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)  # noqa: S310 - our router, http://
    try:
        with _NO_PROXY.open(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {"error": "not JSON", "message": f"HTTP {error.code}"}


# Never through an HTTP_PROXY of the environment: the request carries a token, to our own router.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Crossbar imports `app` in the router worker, whose working directory is the node directory.
app = create_app(Path(os.environ.get("CROSSBAR_DIR") or Path.cwd()))
