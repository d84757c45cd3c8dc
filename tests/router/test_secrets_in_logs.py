"""The whole flow — good, bad, expired, revoked and refreshed tokens, a Bearer header, the demo
login with passwords — then the node is stopped and every file it wrote is scanned: no token,
secret or password."""

import http.cookiejar
import json
import os
import secrets
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support.router import RouterProcess
from tests.support.tokens import mint
from tests.support.wamp import connect, refusal, wamp_error

SECRET = "log-scan-" + secrets.token_urlsafe(32)
ISSUER_SECRET = "issuer-" + secrets.token_urlsafe(32)
PASSWORDS = ["alice-demo-password", "root-demo-password", "wrong-password-" + secrets.token_hex(4)]


@pytest.fixture(scope="module", params=[("debug", 0), ("warn", 0), ("debug", 2)],
                ids=["debug", "warn", "debug-2-proxies"])  # fmt: skip
def node(request, tmp_path_factory):
    """At the level make run uses (warn) and at debug (every line info has, and Crossbar's own debug
    lines: each upgrade request with its Cookie and Authorization headers, and behind proxies every
    AUTHENTICATE and CALL the proxy relays, tickets and refresh tokens included), also behind
    proxies (where Crossbar logs each session's details with the upgrade's headers)."""
    level, proxies = request.param
    router = RouterProcess(tmp_path_factory.mktemp(f"logscan-{level}-{proxies}"),
                           env={"JWT_SECRET": SECRET, "ISSUER_SESSION_SECRET": ISSUER_SECRET},
                           loglevel=level, proxies=proxies).start()  # fmt: skip
    yield router
    router.stop()


def _files_written_under(workdir: Path) -> dict[Path, bytes]:
    """Every regular file under the node's working directory (its node directory included), as
    bytes: logs, the token store, anything Crossbar or the authenticator wrote. The symlinks to the
    repository's web/ and authenticator/ are not the node's."""
    files = {}
    for folder, _subfolders, names in os.walk(workdir, followlinks=False):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                files[path] = path.read_bytes()
    return files


def _demo_login_and_token(port: int) -> tuple[str, list[str]]:
    """Log in through the demo issuer (one wrong password first); returns a token and the cookies."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def call(method, path, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                         data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with opener.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    call("POST", "/auth/login", {"username": "alice", "password": PASSWORDS[2]})
    call("POST", "/auth/login", {"username": "alice", "password": PASSWORDS[0]})
    token = call("GET", "/auth/token")["token"]
    return token, [cookie.value for cookie in jar]


@pytest_twisted.ensureDeferred
async def test_no_token_secret_or_password_reaches_any_file_the_node_wrote(node):
    used: list[str] = []

    def token(*args, **kwargs):
        used.append(mint(*args, secret=SECRET, **kwargs))
        return used[-1]

    demo_token, cookies = await threads.deferToThread(_demo_login_and_token, node.port)
    used.append(demo_token)
    alice = await connect(node.url, demo_token)
    root = await connect(node.url, token("root", ["admin"]))
    bearer = await connect(node.url, authmethods=["anonymous"],
                           headers={"Authorization": f"Bearer {token('carol', ['user'])}"})  # fmt: skip
    cookie_headers = {"Cookie": f"cbjwt={token('dave', ['user'])}", "Origin": "http://127.0.0.1:8080"}
    cookie = await connect(node.url, authmethods=["anonymous"], headers=cookie_headers)
    assert (bearer.details.authid, cookie.details.authid) == ("carol", "dave")
    await refusal(node.url, token("alice", ["user"], ttl=-60))  # expired
    await refusal(node.url, mint("alice", ["user"], secret="wrong-" + SECRET))  # bad signature
    used.append(mint("alice", ["user"], secret="wrong-" + SECRET))
    await refusal(node.url, token("alice", ["superuser"]))  # unknown role
    await refusal(node.url, SECRET)  # a secret sent as the ticket
    await alice.call("authenticator.refresh", token("alice", ["user"], ttl=600))
    await wamp_error(alice.call("authenticator.refresh", token("bob", ["user"])))
    await root.call("authenticator.revoke", authid="alice")
    await refusal(node.url, used[0])
    for client in (root, bearer, cookie):
        client.leave()
    assert node.stop() == 0  # everything the node had to write is written and closed

    files = await threads.deferToThread(_files_written_under, node.workdir)
    log = files[node.log_file].decode(errors="replace")
    # The scan covers the whole flow: the last login refused (alice's revoked token) is in it.
    assert "authentication refused: reason=revoked" in log.split("revoked: authid=alice", 1)[-1]
    needles = {"JWT secret": SECRET, "issuer session secret": ISSUER_SECRET}
    needles.update({f"password {i}": p for i, p in enumerate(PASSWORDS)})
    needles.update({f"token {i}": t for i, t in enumerate(used)})
    needles.update({f"signature of token {i}": t.rsplit(".", 1)[1] for i, t in enumerate(used)})
    needles.update({f"cookie {i}": c for i, c in enumerate(cookies)})
    needles["a JWT header"] = "eyJhbGci"  # the start of every token's header
    found = [
        (name, str(path.relative_to(node.workdir)))
        for path, content in files.items()
        for name, needle in needles.items()
        if needle.encode() in content
    ]
    if node.loglevel == "debug":
        # At debug Crossbar logs every AUTHENTICATE with its signature, the ticket (the router's
        # "onAuthenticate: <ticket>", behind proxies the proxy's onMessage/_process_Authenticate of
        # the message). A ticket that is a token is redacted there like anywhere; one that is not
        # shaped as a token cannot be recognised, and the secret sent as a ticket above shows
        # whole, in those lines only (docs/operations.md, checklist row 7).
        lines = [line for line in log.splitlines() if SECRET in line]
        assert lines and all("onAuthenticate: " in line or "AUTHENTICATE" in line for line in lines), lines
        found.remove(("JWT secret", str(node.log_file.relative_to(node.workdir))))
    assert found == []
