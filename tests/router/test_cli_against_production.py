"""The CLI against a router started the production way (`crossbar start --config
config-production.json`, TLS with a private CA): `revoke` over wss:// with --ca-file and --realm,
the router naming the node config it was started with, and an origin on a port of its own."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from tests.support.raw_websocket import RawWebSocket
from tests.support.router import REPO, RouterProcess, tls_production_node
from tests.support.tls import make_certificates
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect

PRODUCTION = "config-production.json"
ORIGIN = "https://app.example.com:8443"  # the pages are served from a port of their own
KEYS_LINE = "keys: HS256 from environment variable JWT_SECRET"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    node = tls_production_node(tmp_path_factory.mktemp("cli-tls"), origins=(ORIGIN,))
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real CLI, as an operator runs it: its own process, its own reactor."""
    return subprocess.run(
        [sys.executable, "-m", "authenticator", *args], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "JWT_SECRET": TEST_SECRET},
    )  # fmt: skip


def revoke(node, *args: str) -> subprocess.CompletedProcess:
    return cli("revoke", "--cbdir", str(node.cbdir), "--config", PRODUCTION, *args)


@pytest_twisted.ensureDeferred
async def test_revoke_over_wss_ends_the_users_live_session_and_prints_the_whole_answer(tls_node):
    """No --url, no --realm: the wss:// URL (TLS endpoint, port) and the realm come from
    config-production.json; the certificate is verified against the private CA."""
    bob_id = unique("bob")
    bob = await connect(tls_node.url, mint(bob_id), tls_ca=tls_node.certificates.ca)
    before = time.time()
    result = await threads.deferToThread(revoke, tls_node, "--authid", bob_id, "--ca-file",
                                         str(tls_node.certificates.ca))  # fmt: skip
    assert result.returncode == 0, result.stderr
    details = await bob.left.addTimeout(10, reactor)
    assert details.reason == "authenticator.error.revoked", details.reason
    first, until, ended = result.stdout.splitlines()
    assert first == f"revoked: authid={bob_id}"
    found = re.fullmatch(r"tokens issued until: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(Unix (\d+\.\d{3})\); "
                         r"the user's next token must be issued after it", until)  # fmt: skip
    assert found and before <= float(found[1]) <= time.time() + 60, until  # now + the claim leeway
    assert ended == "live sessions ended: 1"
    assert result.stderr == f"{KEYS_LINE}\n"


def test_revoke_over_wss_takes_the_port_of_the_url_and_its_host_name(tls_node):
    url = f"wss://localhost:{tls_node.port}/ws"  # the certificate names localhost and 127.0.0.1
    result = revoke(tls_node, "--jti", unique("jti"), "--url", url, "--ca-file", str(tls_node.certificates.ca))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [result.stdout.splitlines()[0], "live sessions ended: 0"]
    assert result.stdout.startswith("revoked: jti=jti")


def test_revoke_refuses_a_certificate_the_ca_file_did_not_sign(tls_node, tmp_path):
    other = make_certificates(tmp_path / "another-ca")
    result = revoke(tls_node, "--authid", "nobody", "--ca-file", str(other.ca))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        KEYS_LINE,
        f"Error: the router's TLS certificate at wss://127.0.0.1:{tls_node.port}/ws is not trusted: certificate "
        f"verify failed against the CA certificates in {other.ca} (signed by another CA, or expired); give the CA "
        "that signed it with --ca-file",
    ]
    assert result.stdout == ""


def test_revoke_verifies_the_certificate_without_a_ca_file_too(tls_node):
    """Against the system's trusted CAs, which did not sign the private CA's certificate."""
    result = revoke(tls_node, "--authid", "nobody")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: the router's TLS certificate at wss://127.0.0.1:{tls_node.port}/ws is not trusted: certificate "
        "verify failed against the system's trusted CAs (signed by another CA, or expired); give the CA that signed "
        "it with --ca-file"
    )


def test_revoke_joins_the_realm_given_or_the_one_of_the_config(tls_node):
    """A node config whose component is in another realm: the CLI joins that realm (this router has
    none of that name), and --realm overrides it."""
    config = json.loads((tls_node.cbdir / PRODUCTION).read_text())
    config["workers"][0]["components"][0]["realm"] = "staging"
    (tls_node.cbdir / "config-staging.json").write_text(json.dumps(config))
    ca = ("--ca-file", str(tls_node.certificates.ca))
    staging = cli("revoke", "--authid", "nobody", "--cbdir", str(tls_node.cbdir), "--config", "config-staging.json",
                  *ca)  # fmt: skip
    assert staging.returncode == 1
    assert staging.stderr.splitlines()[-1].startswith("Error: the router refused the login: wamp.error.no_such_realm:")
    assert "staging" in staging.stderr.splitlines()[-1], staging.stderr
    given = revoke(tls_node, "--authid", "nobody", "--realm", "realm2", *ca)
    assert given.returncode == 1 and "realm2" in given.stderr.splitlines()[-1], given.stderr
    assert given.stderr.splitlines()[-1].startswith("Error: the router refused the login: wamp.error.no_such_realm:")


def test_a_wss_url_without_a_port_means_443():
    result = cli("revoke", "--authid", "nobody", "--url", "wss://127.0.0.1/ws", "--realm", "realm1", "--token", "x")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "Error: cannot reach the router at wss://127.0.0.1/ws (127.0.0.1:443): ConnectionRefusedError"
    ), result.stderr


def test_the_ready_line_names_the_node_config_the_router_was_started_with(tls_node):
    line = tls_node.wait_for_log("authenticator: ready:")
    assert line.endswith(
        f"authenticator: ready: {tls_node.cbdir / PRODUCTION}: clients connect to wss://127.0.0.1:{tls_node.port}/ws, "
        f"realm realm1; {KEYS_LINE}"
    ), line


def test_an_origin_with_a_port_is_allowed_on_that_port_only(tls_node):
    context = ssl.create_default_context(cafile=str(tls_node.certificates.ca))

    def handshake(origin: str) -> int:
        ws = RawWebSocket(
            tls_node.port, origin=origin, wrap=lambda s: context.wrap_socket(s, server_hostname="localhost")
        )
        ws.sock.close()
        return ws.status

    assert handshake(ORIGIN) == 101
    assert handshake("https://app.example.com") == 400  # port 443: another origin
    assert handshake("https://app.example.com:8444") == 400


def production_start_refused(tmp_path, edit_config) -> tuple[RouterProcess, list[str]]:
    node = RouterProcess(tmp_path, env={"JWT_SECRET": TEST_SECRET}, edit_config=edit_config, production={},
                         loglevel="warn")  # fmt: skip
    try:
        with pytest.raises(RuntimeError):
            node.start()
    finally:
        node.stop()  # a node that started after all must not outlive the test
    lines = [line for line in node.log().splitlines() if "CONFIGURATION ERROR:" in line]
    return node, [line[line.index("CONFIGURATION ERROR:") :] for line in lines]  # without the time and [Router pid]


def test_a_configuration_error_names_the_node_config_the_router_was_started_with(tmp_path):
    """config.json beside it has the same mistake: only the file crossbar start was given is named."""

    def misspell(config):
        config["workers"][0]["components"][0]["extra"]["claims"]["leeway_second"] = 5

    node, lines = production_start_refused(tmp_path, misspell)
    (line,) = lines
    assert line.startswith(
        f"CONFIGURATION ERROR: {node.cbdir / PRODUCTION}: the authenticator component's extra: 'claims' has "
        "unknown key 'leeway_second' (did you mean 'leeway_seconds'?)"
    ), node.log()[-3000:]


def test_a_node_config_problem_names_the_node_config_the_router_was_started_with(tmp_path):
    def misspell(config):
        roles = config["workers"][0]["realms"][0]["roles"]
        next(r for r in roles if r["name"] == "user")["authorizer"] = "authenticator.authorise"

    node, lines = production_start_refused(tmp_path, misspell)
    (line,) = lines
    index = next(i for i, r in enumerate(json.loads((node.cbdir / PRODUCTION).read_text())["workers"][0]["realms"][0]
                                         ["roles"]) if r["name"] == "user")  # fmt: skip
    assert line.startswith(
        f"CONFIGURATION ERROR: {node.cbdir / PRODUCTION}: workers[0].realms[0].roles[{index}].authorizer: "
        "'authenticator.authorise' is not"
    ), line


def test_revoke_refuses_a_certificate_that_does_not_name_the_host_of_the_url(tls_node):
    """The CA is right, the name is not: the certificate names localhost and 127.0.0.1 only."""
    import socket

    other_name = socket.gethostname()
    if other_name in ("localhost", "127.0.0.1") or socket.gethostbyname(other_name) != "127.0.0.1":
        pytest.skip(f"the host name {other_name!r} is not another name of 127.0.0.1 here")
    url = f"wss://{other_name}:{tls_node.port}/ws"
    result = revoke(tls_node, "--authid", "nobody", "--url", url, "--ca-file", str(tls_node.certificates.ca))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: the router's TLS certificate at {url} is not the certificate of {other_name}: it does not name that "
        "host"
    ), result.stderr
    assert "Traceback" not in result.stderr
