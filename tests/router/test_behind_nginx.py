"""The production profile behind Debian's nginx, started for real with the documented site
(docs/nginx/crossbar-jwt.conf): TLS termination, WebSocket upgrade, login, per-user topics, HTTP
publishing, refresh, expiry, revocation, the cookie carrier's Origin, and the client's real
address in the router's lines."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import jwt
import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import reactor, task, threads

from tests.support.leaks import (
    STATUS_TARGETS,
    assert_no_crossbar_details,
    assert_no_status_page,
    plain_get,
    raw_welcomes,
)
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


def publish(site, topic: str, *args, token: str | None = None):
    context = ssl.create_default_context(cafile=str(site.certificates.ca))
    request = urllib.request.Request(
        f"https://localhost:{site.public_port}/publish", method="POST",
        data=json.dumps({"topic": topic, "args": list(args)}).encode(),
        headers={"Authorization": f"Bearer {token or mint('billing', ['backend'])}",
                 "Content-Type": "application/json"},
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


def exp_of(token: str) -> int:
    return jwt.decode(token, options={"verify_signature": False})["exp"]


@pytest_twisted.ensureDeferred
async def test_refresh_expiry_and_revocation_through_nginx(site):
    """The refresh moves the session's deadline (exp + the site's 1 s grace) from the first token's
    to the second's: the session outlives the first deadline and ends, `expired`, after the second
    token's exp. Each is a condition, not a race against a margin of a second or two."""
    name = unique("carol")
    first, second = mint(name, ttl=3), mint(name, ttl=6)
    client = await through_nginx(site, first)
    answer = await client.call("authenticator.refresh", second)
    assert answer["exp"] == exp_of(second)
    # expires_in: the seconds to that exp on the router's clock, read before this one (same clock)
    assert answer["exp"] - time.time() <= answer["expires_in"] + 0.01 and answer["expires_in"] <= 6
    await task.deferLater(reactor, max(0.0, exp_of(first) + 1.5 - time.time()), lambda: None)
    await client.publish(f"app.chat.{name}", "after the first deadline", options=PublishOptions(acknowledge=True))
    assert not client.left.called  # still served past the first token's deadline
    goodbye = await client.left.addTimeout(20, reactor)  # the second exp + 1 s grace
    assert goodbye.reason == "authenticator.error.expired"
    assert time.time() >= exp_of(second)  # ended by the second token's deadline, not the first's
    dave = unique("dave")
    victim, root = await through_nginx(site, mint(dave)), await through_nginx(site, mint("root", ["admin"]))
    try:
        assert (await root.call("authenticator.revoke", authid=dave))["sessions_ended"] == 1
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


@pytest_twisted.ensureDeferred
async def test_no_token_reaches_the_log_at_info_behind_nginx(site):
    """The production profile at info, through nginx: a ticket, a refresh, a cookie, a Bearer
    upgrade, an expired ticket refused and a Bearer publish, each with a token of its own; then the
    whole log is scanned (this test's lines and any earlier test's). Needs no other test."""
    name = unique("grace")
    tokens = {
        "ticket": mint(name), "refresh": mint(name, ttl=120), "cookie": mint(name, ttl=121),
        "bearer": mint(name, ttl=122), "expired": mint(name, ttl=-60), "publish": mint("billing", ["backend"]),
    }  # fmt: skip
    offset = site.log_size()
    ticket = await through_nginx(site, tokens["ticket"])
    await ticket.call("authenticator.refresh", tokens["refresh"])
    cookie = await through_nginx(site, None, authmethods=["anonymous"], headers={"Cookie": f"cbjwt={tokens['cookie']}"})
    bearer = await through_nginx(site, None, authmethods=["anonymous"],
                                 headers={"Authorization": f"Bearer {tokens['bearer']}"})  # fmt: skip
    refused = await through_nginx(site, tokens["expired"]).addErrback(lambda f: f.value)
    assert refused.reason == "authenticator.error.expired"
    status = await threads.deferToThread(
        publish, site, f"app.user.{name}.notifications", "hello", token=tokens["publish"]
    )
    assert status == 200
    for client in (ticket, cookie, bearer):
        client.leave()
    site.wait_for_log("authentication refused: reason=expired", after=offset)
    for via in ("ticket", "cookie", "bearer"):
        site.wait_for_log(f"authentication accepted: authid={name} role=user via={via}", after=offset)
    log = site.log()
    assert not re.search(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.", log)
    for kind, token in tokens.items():
        assert token.rsplit(".", 1)[1] not in log, f"the {kind} token's signature is in the log"
    assert TEST_SECRET not in log


def tls_to(site):
    """socket -> the TLS socket nginx expects (the test CA's certificate for localhost)."""
    context = ssl.create_default_context(cafile=str(site.certificates.ca))
    return lambda sock: context.wrap_socket(sock, server_hostname="localhost")


def test_a_welcome_through_nginx_carries_no_crossbar_detail_at_any_level(site):
    """Issue 20, finding 7, behind nginx: the raw WELCOME (ticket and cookie logins) has no x_cb_*
    nor transport at the top or in authextra, and no node id or worker pid anywhere."""
    welcomes = raw_welcomes(site.public_port, site.origin, wrap=tls_to(site))
    node_id = json.loads((site.cbdir / "config-production.json").read_text())["controller"]["id"]
    assert_no_crossbar_details(welcomes, [site.process.pid, *site.worker_pids()], node_id)


def test_a_plain_get_of_the_websocket_path_through_nginx_shows_no_status_page(site):
    """Issue 20, finding 7, behind nginx: GET /ws (and ?redirect=) answers no page with Crossbar's
    version or the worker's pid, and redirects nowhere."""
    answers = {target: plain_get(site.public_port, target, wrap=tls_to(site)) for target in STATUS_TARGETS}
    assert_no_status_page(answers, [site.process.pid, *site.worker_pids()])


def test_no_client_writes_a_line_of_its_own_into_the_log_through_nginx(site):
    """Issue 20, finding 1, behind nginx: a HELLO realm and a user's SUBSCRIBE URI with a line break
    and a fake line, an Origin and a /publish Content-Type with terminal control sequences reach the
    router through nginx and are logged escaped, each in one line (tests/router/test_log_injection.py)."""
    from tests.router.test_log_injection import PROTOCOL_ERROR, fake_line, written_since
    from tests.support.raw_websocket import HELLO, RawWebSocket

    context = ssl.create_default_context(cafile=str(site.certificates.ca))

    def websocket(origin: str) -> RawWebSocket | int:
        """A raw WebSocket through nginx (TLS), or the status that refused the upgrade."""
        sock = socket.create_connection(("127.0.0.1", site.public_port), timeout=10)
        tls = context.wrap_socket(sock, server_hostname="localhost")
        tls.sendall(
            f"GET /ws HTTP/1.1\r\nHost: localhost:{site.public_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: wamp.2.json\r\nOrigin: {origin}\r\n\r\n".encode("latin-1")
        )  # fmt: skip
        response = b""
        while b"\r\n\r\n" not in response and (chunk := tls.recv(4096)):
            response += chunk
        status = int(response.split(b" ", 2)[1])
        if status != 101:
            tls.close()
            return status
        ws = object.__new__(RawWebSocket)  # its frame reading and writing, over this TLS socket
        ws.sock, ws._buffer = tls, response.partition(b"\r\n\r\n")[2]
        return ws

    anonymous = {"roles": {"subscriber": {}}, "authmethods": ["anonymous"]}
    fake, offset = fake_line(), site.log_size()
    ws = websocket(site.origin)
    ws.send_wamp([HELLO, f"realm1\n{fake}\x1bM", anonymous])
    assert ws.wait_for_end(10).close_code == PROTOCOL_ERROR
    ws.close()
    written_since(site, offset, f"realm1\\n{fake}\\x1bM", fake)

    fake, offset = fake_line(), site.log_size()
    ws = websocket(site.origin)  # the production profile has no anonymous access: a user's session
    assert isinstance(ws.join(mint(unique("mallory"))), int)
    ws.send_wamp([32, 1, {}, f"app.public.x\n{fake}\x08\x08\x1b[2K"])
    assert ws.wait_for_end(10).close_code == PROTOCOL_ERROR
    ws.close()
    written_since(site, offset, f"app.public.x\\n{fake}\\x08\\x08\\x1b[2K", fake)

    # an origin the router does not allow: Autobahn refuses the upgrade and logs why, naming it
    offset = site.log_size()
    assert websocket(f"https://{unique('evil')}.example/\x08\x08\x1bM\x1b]0;owned\x07") == 400
    written_since(site, offset, ".example/\\x08\\x08\\x1bM\\x1b]0;owned\\x07")

    offset = site.log_size()
    request = urllib.request.Request(
        f"https://localhost:{site.public_port}/publish", method="POST", data=b"{}",
        headers={"Content-Type": f"application/json\x08\x08\x1bM\x1b[1A{unique('ct')}"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10, context=context)
    assert refused.value.code == 400
    written_since(site, offset, "Content-Type 'application/json\\x08\\x08\\x1bM\\x1b[1A")


def test_a_body_refused_while_it_arrives_names_the_client_behind_nginx(site):
    """The router refuses a body on /ws (which takes none) before reading it (authenticator/
    body_limit.py); its line names the client nginx saw, via nginx, never the client's own
    X-Forwarded-For (issue 20, finding 10)."""
    offset = site.log_size()
    context = ssl.create_default_context(cafile=str(site.certificates.ca))
    with socket.create_connection(("127.0.0.1", site.public_port), timeout=10, source_address=(CLIENT, 0)) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"POST /%77s HTTP/1.1\r\nHost: localhost:{site.public_port}\r\nContent-Length: 10\r\n"
                        "X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n0123456789".encode())  # fmt: skip
            answer = b""
            while part := tls.recv(4096):
                answer += part
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"This path takes no request body." in answer
    line = site.wait_for_log("http request refused: status=413 reason=too_large", after=offset)
    assert f"peer={CLIENT} (via 127.0.0.1:" in line and "203.0.113.9" not in line, line
