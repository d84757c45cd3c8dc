"""The demo issuer's document shares (POST /auth/shares, GET /auth/shares, GET /auth/shares/<doc>/token)
through a real node, both deployments: only a logged-in admin shares, only the user a document is
shared with gets a grant token for it, and that token's session may read that document and nothing
more of app.doc. The page's side, and the grant's end at exp, are in tests/web/test_demo_page.py."""

from __future__ import annotations

import http.client
import itertools
import json

import jwt
import pytest_twisted
from autobahn.wamp.types import SubscribeOptions

from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect, wamp_error

PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password", "root": "root-demo-password"}
# Each browser-less user logs in from a loopback address of its own: the shared node counts logins
# per address (10 a minute), and other tests log in from 127.0.0.1.
_sources = (f"127.0.31.{n}" for n in itertools.count(1))


class Visitor:
    """One HTTP client of the issuer, with its session cookie, from a loopback address of its own."""

    def __init__(self, node) -> None:
        self.node = node
        self.source = next(_sources)
        self.cookie = None

    def send(self, method, path, body=None, content_type="application/json") -> tuple[int, dict, dict]:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        headers = {"Content-Type": content_type, **({"Cookie": self.cookie} if self.cookie else {})}
        connection = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=30,
                                                source_address=(self.source, 0))  # fmt: skip
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = (response.status, json.loads(response.read()), dict(response.getheaders()))
        finally:
            connection.close()
        if "Set-Cookie" in answer[2]:
            self.cookie = answer[2]["Set-Cookie"].split(";")[0]
        return answer

    def log_in(self, name: str) -> Visitor:
        status, body, _ = self.send("POST", "/auth/login", {"username": name, "password": PASSWORDS[name]})
        assert status == 200, body
        return self


def test_only_a_logged_in_admin_may_share_a_document_and_a_wrong_request_says_what_to_send(router):
    share = {"doc": unique("doc"), "user": "alice", "seconds": 120}
    status, body, _ = Visitor(router).send("POST", "/auth/shares", share)
    assert status == 403 and "Only a logged-in admin may share a document" in body["error"]
    status, body, _ = Visitor(router).log_in("alice").send("POST", "/auth/shares", share)
    assert status == 403 and "log in as an admin" in body["error"]
    root = Visitor(router).log_in("root")
    # a cross-site form posts text/plain without a preflight: it must not share anything
    status, body, _ = root.send("POST", "/auth/shares", json.dumps(share).encode(), content_type="text/plain")
    assert status == 400 and '{"doc": "42", "user": "alice", "seconds": 300}' in body["error"]
    status, body, _ = root.send("POST", "/auth/shares", {**share, "seconds": 59})
    assert status == 400 and "'seconds' must be a whole number from 60 to 3600" in body["error"]
    status, body, _ = root.send("POST", "/auth/shares", {**share, "doc": "a.b"})
    assert status == 400 and "'doc' must be a document id" in body["error"]
    status, body, _ = root.send("POST", "/auth/shares", {**share, "user": "mallory"})
    assert status == 400 and "'user' must name a demo user" in body["error"]


@pytest_twisted.ensureDeferred
async def test_only_alice_gets_a_grant_token_and_it_reads_that_document_only_until_the_share_ends(router):
    doc = unique("doc")
    root, alice, bob = (Visitor(router).log_in(name) for name in ("root", "alice", "bob"))
    status, shared, _ = root.send("POST", "/auth/shares", {"doc": doc, "user": "alice", "seconds": 120})
    assert status == 200 and shared["topic"] == f"app.doc.{doc}" and shared["by"] == "root", shared
    status, listed, _ = alice.send("GET", "/auth/shares")
    assert status == 200 and shared in listed["shares"], listed
    assert (listed["min_seconds"], listed["max_seconds"]) == (60, 3600)
    status, listed, _ = bob.send("GET", "/auth/shares")
    assert status == 200 and all(share["doc"] != doc for share in listed["shares"]), listed
    status, body, _ = bob.send("GET", f"/auth/shares/{doc}/token")
    assert status == 404 and "No live share of this document with you" in body["error"]
    status, body, _ = Visitor(router).send("GET", f"/auth/shares/{doc}/token")
    assert status == 401 and "POST /auth/login" in body["error"]

    status, grant, headers = alice.send("GET", f"/auth/shares/{doc}/token")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    claims = jwt.decode(grant["token"], TEST_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["roles"], claims["exp"]) == ("alice", ["user"], shared["exp"])
    assert claims["caps"] == [{"uri": f"app.doc.{doc}", "match": "exact", "allow": ["subscribe"]}]
    assert grant["exp"] == shared["exp"] and grant["topic"] == f"app.doc.{doc}"

    reader = await connect(router.url, grant["token"])
    plain = await connect(router.url, mint("alice"))  # alice's own token: no grant
    try:
        assert (reader.details.authid, reader.details.authrole) == ("alice", "user")
        await reader.subscribe(lambda *args: None, f"app.doc.{doc}")
        assert await wamp_error(reader.subscribe(lambda *args: None, f"app.doc.{doc}x")) == "wamp.error.not_authorized"
        everything = SubscribeOptions(match="prefix")  # the whole space the rule makes grantable
        assert await wamp_error(reader.subscribe(lambda *args: None, "app.doc.", options=everything)) == (
            "wamp.error.not_authorized"
        )
        assert await wamp_error(plain.subscribe(lambda *args: None, f"app.doc.{doc}")) == "wamp.error.not_authorized"
    finally:
        reader.leave()
        plain.leave()
    assert grant["token"].rsplit(".", 1)[1] not in router.log()  # a grant token is a token: never logged


def test_a_share_request_over_the_issuers_body_bound_is_refused_413_unread(router):
    root = Visitor(router).log_in("root")
    status, body, _ = root.send("POST", "/auth/shares", b'{"doc": "' + b"x" * 100_000 + b'"}')
    assert status == 413 and "4096 bytes" in body["error"]
    if not router.proxies:  # the issuer's advice names what a share takes; behind the proxies a proxy answers
        assert '{"doc": "42", "user": "alice", "seconds": 300}' in body["error"], body
    assert router.process.poll() is None
