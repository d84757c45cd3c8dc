"""The production profile (.crossbar/config-production.json, authenticator/config/production_profile.py) through a real
node: no demo, an explicit key source, allowed origins, metrics on loopback only, TLS, graceful stop."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from authenticator.config.production_profile import options_of, production_config
from tests.support.raw_websocket import RawWebSocket
from tests.support.router import REPO, RouterProcess, tls_production_node
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, refusal

ORIGIN = "https://app.example.com"


def test_the_shipped_production_config_is_the_one_derived_from_config_json():
    """With the options it was made with (your origins, port and TLS files are yours to choose):
    keys, claims and policy come from config.json."""
    shipped = json.loads((REPO / ".crossbar" / "config-production.json").read_text())
    derived = production_config(json.loads((REPO / ".crossbar" / "config.json").read_text()), **options_of(shipped))
    regenerate = "python -m authenticator production-config > .crossbar/config-production.json"
    assert shipped == derived, f"regenerate it: {regenerate}"


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    node = RouterProcess(
        tmp_path_factory.mktemp("production"), env={"JWT_SECRET": TEST_SECRET}, production={"origins": (ORIGIN,)},
        loglevel="warn",
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def status_of(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_start_without_an_explicit_key_source_stops_with_one_line(tmp_path):
    env = {"JWT_SECRET": ""}
    node = RouterProcess(tmp_path, env=env, production={}, loglevel="warn")
    with pytest.raises(RuntimeError):
        node.start()
    log = node.log()
    errors = [line for line in log.splitlines() if "CONFIGURATION ERROR" in line]
    # one line says what is wrong, and nothing buries it: no traceback of Crossbar's start-up
    assert len(errors) == 1, log
    assert "environment variable JWT_SECRET is not set" in errors[0]
    assert "Traceback" not in log and 'File "' not in log, log
    assert not (node.cbdir / "jwt-secret.key").exists()  # no development secret was made up
    assert node.process.returncode == 1


@pytest.mark.parametrize("interface", ["0.0.0.0", "::", "203.0.113.7", "10.0.0.5"])  # noqa: S104 - refused
def test_a_public_interface_without_tls_is_refused_by_production_config(tmp_path, interface):
    """Checklist row 3: plain HTTP on an interface other clients reach would carry tokens in the
    clear (and trust X-Forwarded-For from loopback on a port the world reaches)."""
    from click.testing import CliRunner

    from authenticator.ops.cli import main

    (tmp_path / "config.json").write_text((REPO / ".crossbar" / "config.json").read_text())
    source = json.loads((REPO / ".crossbar" / "config.json").read_text())
    with pytest.raises(ValueError, match=f"interface {interface} is not loopback"):
        production_config(source, interface=interface)
    refused = CliRunner().invoke(main, ["production-config", "--interface", interface, "--cbdir", str(tmp_path)])
    assert refused.exit_code == 2 and f"interface {interface} is not loopback" in refused.output, refused.output
    assert '"workers"' not in refused.output  # no config printed
    # with TLS it may listen there; on loopback (behind a proxy) it may go without
    tls = ["--tls-key", "server.key", "--tls-certificate", "server.crt"]
    allowed = CliRunner().invoke(main, ["production-config", "--interface", interface, *tls, "--cbdir", str(tmp_path)])
    assert allowed.exit_code == 0, allowed.output
    endpoint = json.loads(allowed.output)["workers"][0]["transports"][0]["endpoint"]
    assert endpoint["interface"] == interface and endpoint["tls"] == {"key": "server.key", "certificate": "server.crt"}
    for loopback in ("127.0.0.1", "::1"):
        endpoint = production_config(source, interface=loopback)["workers"][0]["transports"][0]["endpoint"]
        assert endpoint["interface"] == loopback and "tls" not in endpoint


def test_the_production_profile_turns_the_websocket_status_page_off_whatever_the_source_says():
    """GET /ws would answer Crossbar's status page: its exact version and the worker's pid."""
    source = json.loads((REPO / ".crossbar" / "config.json").read_text())
    for path in source["workers"][0]["transports"][0]["paths"].values():
        if path.get("type") == "websocket":
            path["options"]["enable_webstatus"] = True
    derived = production_config(source)
    websockets = [p for t in derived["workers"][0]["transports"] for p in t["paths"].values()
                  if p.get("type") == "websocket"]  # fmt: skip
    assert websockets and all(p["options"]["enable_webstatus"] is False for p in websockets)


def test_no_demo_no_public_metrics(production):
    assert status_of(production.port, "/auth/login") == 404  # no demo login, no known passwords
    assert status_of(production.port, "/") == 404  # no demo page
    assert status_of(production.port, "/metrics") == 404  # not on the public port
    assert status_of(production.metrics_port, "/metrics") == 200
    config = json.loads((production.cbdir / "config-production.json").read_text())
    metrics = next(t for t in config["workers"][0]["transports"] if t.get("id") == "metrics")
    assert metrics["endpoint"]["interface"] == "127.0.0.1"
    assert config["controller"]["id"] == "crossbar_jwt"  # not the host name, in every WELCOME


@pytest_twisted.ensureDeferred
async def test_anonymous_access_is_off(production):
    refused = await refusal(production.url, None)
    assert refused.reason == "authenticator.error.missing_token"


def handshake(port: int, origin: str | None) -> int:
    ws = RawWebSocket(port, origin=origin)
    ws.sock.close()
    return ws.status


def test_a_websocket_from_a_foreign_origin_is_refused(production):
    """Cross-site WebSocket hijacking: a page of another site opens the socket with the visitor's
    cookies; the upgrade is refused by its Origin, before any authentication."""
    assert handshake(production.port, "https://evil.example") == 400
    assert handshake(production.port, "null") == 400  # sandboxed frames, file:// pages
    assert handshake(production.port, "http://app.example.com") == 400  # the scheme counts
    assert handshake(production.port, ORIGIN) == 101
    assert handshake(production.port, None) == 101  # non-browser clients send none


@pytest_twisted.ensureDeferred
async def test_a_user_logs_in_and_gets_their_notifications(production):
    bob_id = unique("bob")
    bob = await connect(production.url, mint(bob_id), headers={"Origin": ORIGIN})
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, f"app.user.{bob_id}.notifications")
        request = urllib.request.Request(
            f"http://127.0.0.1:{production.port}/publish", method="POST",
            data=json.dumps({"topic": f"app.user.{bob_id}.notifications", "args": ["hi"]}).encode(),
            headers={"Authorization": f"Bearer {mint('billing', ['backend'])}", "Content-Type": "application/json"},
        )  # fmt: skip
        await threads.deferToThread(lambda: urllib.request.urlopen(request, timeout=10).close())
        assert (await inbox.next())[0] == ("hi",)
    finally:
        bob.leave()


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    node = tls_production_node(tmp_path_factory.mktemp("tls"), origins=(ORIGIN,))
    yield node
    assert node.stop() == 0, node.log()[-3000:]


@pytest_twisted.ensureDeferred
async def test_wss_with_the_test_ca(tls_node):
    client = await connect(tls_node.url, mint(unique("alice")), tls_ca=tls_node.certificates.ca)
    assert client.details.authrole == "user"
    client.leave()


def test_https_publish_and_tls_13_only(tls_node):
    context = ssl.create_default_context(cafile=str(tls_node.certificates.ca))
    request = urllib.request.Request(
        f"https://localhost:{tls_node.port}/publish", method="POST",
        data=json.dumps({"topic": "app.public.news", "args": ["over TLS"]}).encode(),
        headers={"Authorization": f"Bearer {mint('billing', ['backend'])}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        assert response.status == 200 and "id" in json.load(response)
    old = ssl.create_default_context(cafile=str(tls_node.certificates.ca))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", tls_node.port), timeout=10) as raw:
        old.wrap_socket(raw, server_hostname="localhost")


@pytest_twisted.ensureDeferred
async def test_a_graceful_stop_says_goodbye_to_clients(tmp_path):
    node = RouterProcess(tmp_path, env={"JWT_SECRET": TEST_SECRET}, production={}, loglevel="warn").start()
    client = await connect(node.url, mint(unique("carol")))
    node.process.send_signal(signal.SIGINT)  # systemd: KillSignal=SIGINT (docs/operations.md)
    details = await client.left.addTimeout(15, reactor)
    assert node.process.wait(timeout=15) == 0
    assert details.reason == "wamp.close.system_shutdown", details.reason
    # The stop's log says what happened and nothing a user asks about (docs/troubleshooting.md):
    # Crossbar detached the component twice ("cannot detach session") until it disconnects once.
    log = node.log()  # whole: the node has exited
    assert "sent GOODBYE (wamp.close.system_shutdown) to every client session" in log
    assert "cannot detach session" not in log, log[-2000:]
