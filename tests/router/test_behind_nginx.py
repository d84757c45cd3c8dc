"""The production profile behind Debian's nginx, started for real with the documented site
(docs/nginx/crossbar-jwt.conf): TLS termination, WebSocket upgrade, login, per-user topics, HTTP
publishing, refresh, expiry, revocation, the cookie carrier's Origin, and the client's real
address in the router's lines."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from tests.support.router import REPO, RouterProcess, free_port, port_answers, wait_for
from tests.support.tls import make_certificates
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

SITE = REPO / "docs" / "nginx" / "crossbar-jwt.conf"
CLIENT = "127.0.0.2"  # the clients connect from here: nginx sees it, the router sees nginx (127.0.0.1)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.fail("nginx is missing: make test installs Debian's nginx")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The router (production profile, 1 s expiry grace, origin https://localhost:<nginx port>) and
    nginx in front of it with the documented site, its ports and certificate paths filled in."""
    workdir = tmp_path_factory.mktemp("nginx")
    certificates = make_certificates(workdir / "tls")
    public_port = free_port()
    origin = f"https://localhost:{public_port}"

    def short_grace(config):
        extra = config["workers"][0]["components"][0]["extra"]
        extra["session"]["expiry_grace_seconds"] = 1

    node = RouterProcess(
        workdir / "router", env={"JWT_SECRET": TEST_SECRET}, edit_config=short_grace, loglevel="info",
        production={"origins": (origin,)},
    ).start()  # fmt: skip
    text = SITE.read_text()
    for old, new in (("server 127.0.0.1:8080;", f"server 127.0.0.1:{node.port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{public_port} ssl;"),
                     ("/etc/ssl/crossbar-jwt/server.crt", str(certificates.certificate)),
                     ("/etc/ssl/crossbar-jwt/server.key", str(certificates.key))):  # fmt: skip
        assert old in text, f"docs/nginx/crossbar-jwt.conf no longer has {old!r}"
        text = text.replace(old, new)
    prefix = workdir / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(text)
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid; error_log {prefix}/error.log; events {{}}\n"
        f"http {{ access_log {prefix}/access.log; client_body_temp_path {prefix}/body; "
        f"proxy_temp_path {prefix}/proxy; include {prefix}/site.conf; }}\n"
    )
    nginx = subprocess.Popen([nginx_binary(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g",
                              "daemon off;"], stderr=subprocess.PIPE)  # fmt: skip
    wait_for(lambda: port_answers(public_port) or nginx.poll() is not None, 10, "nginx to listen")
    assert nginx.poll() is None, nginx.stderr.read().decode()[-2000:]
    node.public_port, node.origin, node.certificates = public_port, origin, certificates
    yield node
    nginx.terminate()
    nginx.wait(timeout=10)
    assert node.stop() == 0, node.log()[-3000:]


def through_nginx(site, ticket, **kwargs):
    url = f"wss://localhost:{site.public_port}/ws"
    headers = {"Origin": site.origin, **kwargs.pop("headers", {})}
    return connect(url, ticket, tls_ca=site.certificates.ca, bind_address=CLIENT, headers=headers, **kwargs)


def publish(site, topic: str, *args):
    context = ssl.create_default_context(cafile=str(site.certificates.ca))
    request = urllib.request.Request(
        f"https://localhost:{site.public_port}/publish", method="POST",
        data=json.dumps({"topic": topic, "args": list(args)}).encode(),
        headers={"Authorization": f"Bearer {mint('billing', ['backend'])}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status


@pytest_twisted.ensureDeferred
async def test_per_user_topics_and_http_publishing_work_through_nginx(site):
    bob_id, alice_id = unique("bob"), unique("alice")
    bob, alice = await through_nginx(site, mint(bob_id)), await through_nginx(site, mint(alice_id))
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, f"app.user.{bob_id}.notifications")
        assert await wamp_error(alice.subscribe(Inbox(), f"app.user.{bob_id}.notifications")) == (
            "wamp.error.not_authorized"
        )
        assert await threads.deferToThread(publish, site, f"app.user.{bob_id}.notifications", "via nginx") == 200
        assert (await inbox.next())[0] == ("via nginx",)
    finally:
        bob.leave()
        alice.leave()


@pytest_twisted.ensureDeferred
async def test_refresh_expiry_and_revocation_through_nginx(site):
    name = unique("carol")
    client = await through_nginx(site, mint(name, ttl=2))
    answer = await client.call("authenticator.refresh", mint(name, ttl=3))
    assert answer["expires_in"] > 2
    goodbye = await client.left.addTimeout(15, reactor)  # exp 3 s + 1 s grace
    assert goodbye.reason == "authenticator.error.expired"
    dave = unique("dave")
    victim, root = await through_nginx(site, mint(dave)), await through_nginx(site, mint("root", ["admin"]))
    try:
        assert await root.call("authenticator.revoke", authid=dave) == {"sessions_ended": 1}
        assert (await victim.left.addTimeout(5, reactor)).reason == "authenticator.error.revoked"
    finally:
        root.leave()


@pytest_twisted.ensureDeferred
async def test_the_cookie_carrier_works_from_the_allowed_origin_only(site):
    token = mint(unique("erin"))
    client = await through_nginx(site, None, authmethods=["anonymous"], headers={"Cookie": f"cbjwt={token}"})
    assert client.details.authrole == "user"
    client.leave()
    # another site's page, with the visitor's cookie: refused at the upgrade (allowed_origins),
    # before any login; the answer comes from the router, through nginx
    assert upgrade_status(site, {"Cookie": f"cbjwt={token}", "Origin": "https://evil.example"}) == 400
    assert upgrade_status(site, {"Cookie": f"cbjwt={token}", "Origin": site.origin}) == 101


def upgrade_status(site, headers: dict) -> int:
    context = ssl.create_default_context(cafile=str(site.certificates.ca))
    with socket.create_connection(("127.0.0.1", site.public_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            lines = ["GET /ws HTTP/1.1", f"Host: localhost:{site.public_port}", "Upgrade: websocket",
                     "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
                     "Sec-WebSocket-Protocol: wamp.2.json", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
            tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            return int(tls.recv(4096).split(b" ", 2)[1])


@pytest_twisted.ensureDeferred
async def test_the_routers_lines_name_the_clients_real_address(site):
    offset = site.log_size()
    refused = await through_nginx(site, "not-a-jwt").addErrback(lambda f: f.value)
    assert refused.reason == "authenticator.error.malformed_token"
    line = site.wait_for_log("authentication refused: reason=malformed_token", after=offset)
    assert f"peer={CLIENT} (via tcp4:127.0.0.1:" in line
    # a client's own X-Forwarded-For is not believed: nginx replaces it with the address it saw
    offset = site.log_size()
    await through_nginx(site, "not-a-jwt", headers={"X-Forwarded-For": "203.0.113.9"}).addErrback(lambda f: None)
    line = site.wait_for_log("authentication refused: reason=malformed_token", after=offset)
    assert f"peer={CLIENT} (via" in line and "203.0.113.9" not in line
    # nor from a peer that is not the proxy (straight to the router, from another address)
    offset = site.log_size()
    await connect(site.url, "not-a-jwt", bind_address=CLIENT, headers={"X-Forwarded-For": "203.0.113.9"}
                  ).addErrback(lambda f: None)  # fmt: skip
    line = site.wait_for_log("authentication refused: reason=malformed_token", after=offset)
    assert f"peer=tcp4:{CLIENT}:" in line and "203.0.113.9" not in line
    # accepted logins too (at info)
    offset = site.log_size()
    name = unique("frank")
    client = await through_nginx(site, mint(name))
    line = site.wait_for_log(f"authentication accepted: authid={name}", after=offset)
    assert f"peer={CLIENT} (via" in line
    client.leave()


def test_no_token_reaches_the_log_at_info_behind_nginx(site):
    """The production profile at info, every test above through nginx (cookies, Bearer, tickets)."""
    import re

    assert "authentication accepted" in site.log()
    assert not re.search(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.", site.log())
    assert TEST_SECRET not in site.log()
