"""The token issuers: the README's Node and Python examples and the demo Flask issuer, each
against the real router."""

import http.cookiejar
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support.router import REPO, free_port, port_answers, wait_for
from tests.support.snippets import readme_snippet
from tests.support.tokens import TEST_SECRET
from tests.support.wamp import connect

EXAMPLES = REPO / "docs" / "issuers"


@pytest.mark.parametrize(
    "command",
    [["node", str(EXAMPLES / "mint_token.js")], [sys.executable, str(EXAMPLES / "mint_token.py")]],
    ids=["node-jsonwebtoken", "python-pyjwt"],
)
@pytest_twisted.ensureDeferred
async def test_the_documented_issuer_examples_mint_tokens_the_router_accepts(router, command):
    result = await threads.deferToThread(
        subprocess.run, [*command, "carol", "user"], env={"JWT_SECRET": TEST_SECRET, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = await connect(router.url, result.stdout.strip())
    assert (client.details.authid, client.details.authrole) == ("carol", "user")
    client.leave()


def _http(router, opener, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{router.port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def test_the_demo_issuer_gives_tokens_only_to_a_logged_in_session(router):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    status, body, _ = _http(router, opener, "GET", "/auth/token")
    assert status == 401 and "log" in body["error"].lower()
    status, body, _ = _http(router, opener, "POST", "/auth/login", {"username": "alice", "password": "wrong"})
    assert status == 401
    status, body, headers = _http(router, opener, "POST", "/auth/login",
                                  {"username": "alice", "password": "alice-demo-password"})  # fmt: skip
    assert status == 200 and body == {"authid": "alice", "roles": ["user"]}
    assert "httponly" in headers["Set-Cookie"].lower() and "samesite=lax" in headers["Set-Cookie"].lower()
    status, body, headers = _http(router, opener, "GET", "/auth/token")
    assert status == 200 and body["token"].count(".") == 2
    assert headers["Cache-Control"] == "no-store"
    status, body, _ = _http(router, opener, "POST", "/auth/logout")
    assert _http(router, opener, "GET", "/auth/token")[0] == 401


def _fetch(opener, url: str) -> tuple[int, dict, bytes]:
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest_twisted.ensureDeferred
async def test_the_readmes_php_token_endpoint_mints_tokens_the_router_accepts(router, tmp_path):
    """README "Your first client", PHP: token.php as printed, behind a stand-in for your login."""
    php = shutil.which("php")
    if php is None:
        pytest.fail("php is missing: make test installs Debian's php-cli")
    (tmp_path / "token.php").write_text(readme_snippet("**PHP: the token endpoint**", "php"))
    (tmp_path / "login.php").write_text("<?php session_start(); $_SESSION['username'] = $_GET['user']; echo 'ok';")
    port = free_port()
    server = subprocess.Popen([php, "-S", f"127.0.0.1:{port}", "-t", str(tmp_path)],
                              env={"JWT_SECRET": TEST_SECRET, "PATH": "/usr/bin:/bin"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        await threads.deferToThread(wait_for, lambda: port_answers(port), 10, "php -S to listen")
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        base = f"http://127.0.0.1:{port}"
        status, _, _ = await threads.deferToThread(_fetch, opener, f"{base}/token.php")
        assert status == 401  # nobody logged in
        await threads.deferToThread(_fetch, opener, f"{base}/login.php?user=dave")
        status, headers, body = await threads.deferToThread(_fetch, opener, f"{base}/token.php")
        assert status == 200 and headers.get("Cache-Control") == "no-store"
        client = await connect(router.url, json.loads(body)["token"])
        assert (client.details.authid, client.details.authrole) == ("dave", "user")
        client.leave()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_only_an_admin_may_publish_from_the_demo_backend(router):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    body = {"user": "bob", "text": "hi"}
    assert _http(router, opener, "POST", "/auth/backend-publish", body)[0] == 403  # not logged in
    _http(router, opener, "POST", "/auth/login", {"username": "alice", "password": "alice-demo-password"})
    status, answer, _ = _http(router, opener, "POST", "/auth/backend-publish", body)
    assert status == 403 and "admin" in answer["error"]
    _http(router, opener, "POST", "/auth/login", {"username": "root", "password": "root-demo-password"})
    status, answer, _ = _http(router, opener, "POST", "/auth/backend-publish", body)
    assert status == 200 and answer["status"] == 200 and isinstance(answer["answer"]["id"], int), answer
