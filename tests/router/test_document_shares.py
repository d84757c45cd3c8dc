"""The demo issuer's document shares (POST /auth/shares, GET /auth/shares, GET /auth/shares/<doc>/token)
through a real node, both deployments: only a logged-in admin shares, only the user a document is
shared with gets a grant token for it, and that token is no login: the role "document-reader" only,
a login token's short life, and its session may read that document and nothing else (not even what
its user may read). The page's side, its refreshes and the grant's end at exp, are in
tests/web/test_demo_page.py."""

from __future__ import annotations

import http.client
import itertools
import json
import time

import jwt
import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect, wamp_error

PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password", "root": "root-demo-password"}
# Slack for the grant token's exp against this test's clock: the issuer's second is rounded down.
EXP_SLACK_SECONDS = 2
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

    def grant(self, doc: str) -> dict:
        status, grant, headers = self.send("GET", f"/auth/shares/{doc}/token")
        assert status == 200 and headers["Cache-Control"] == "no-store", (status, grant)
        return grant

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

    asked = time.time()
    grant = alice.grant(doc)
    claims = jwt.decode(grant["token"], TEST_SECRET, algorithms=["HS256"])
    # No login token: the one minimal role, never alice's own ("user"), and a login token's life
    # (the issuer's token_ttl_seconds), not the share's 120 s.
    assert set(claims) == {"sub", "roles", "iat", "exp", "jti", "caps"}, claims
    assert (claims["sub"], claims["roles"]) == ("alice", ["document-reader"])
    assert claims["caps"] == [{"uri": f"app.doc.{doc}", "match": "exact", "allow": ["subscribe"]}]
    assert claims["exp"] <= asked + issuer_ttl(router) + EXP_SLACK_SECONDS, (claims, asked)
    assert claims["exp"] < shared["exp"] and grant["exp"] == claims["exp"] and grant["topic"] == f"app.doc.{doc}"

    reader = await connect(router.url, grant["token"])
    plain = await connect(router.url, mint("alice"))  # alice's own token: no grant
    try:
        assert (reader.details.authid, reader.details.authrole) == ("alice", "document-reader")
        await reader.subscribe(lambda *args: None, f"app.doc.{doc}")
        # Nothing else, not even what alice herself may read: each refused with the exact error.
        for topic in ("app.chat.lobby", "app.public.x", "app.user.alice.notifications", f"app.doc.{doc}x"):
            assert await wamp_error(reader.subscribe(lambda *args: None, topic)) == "wamp.error.not_authorized", topic
        everything = SubscribeOptions(match="prefix")  # the whole space the rule makes grantable
        assert await wamp_error(reader.subscribe(lambda *args: None, "app.doc.", options=everything)) == (
            "wamp.error.not_authorized"
        )
        assert await wamp_error(reader.publish(f"app.doc.{doc}", "x", options=PublishOptions(acknowledge=True))) == (
            "wamp.error.not_authorized"
        )
        assert await wamp_error(plain.subscribe(lambda *args: None, f"app.doc.{doc}")) == "wamp.error.not_authorized"
        # While the share lasts, the page refreshes the session with the next grant token (the same
        # role and caps: accepted); alice's login token (other roles, no caps) is refused.
        refreshed = await reader.call("authenticator.refresh", alice.grant(doc)["token"])
        assert refreshed["exp"] <= time.time() + issuer_ttl(router) + EXP_SLACK_SECONDS, refreshed
        assert await wamp_error(reader.call("authenticator.refresh", mint("alice"))) == (
            "authenticator.error.refresh_refused"
        )
    finally:
        reader.leave()
        plain.leave()
    assert grant["token"].rsplit(".", 1)[1] not in router.log()  # a grant token is a token: never logged


def issuer_ttl(router) -> int:
    """The node's issuer.token_ttl_seconds: the longest a grant token lives."""
    components = [c for w in router.config["workers"] for c in w.get("components", [])]
    return next(c["extra"]["issuer"]["token_ttl_seconds"] for c in components if "issuer" in c.get("extra", {}))


def test_a_share_request_over_the_issuers_body_bound_is_refused_413_unread(router):
    root = Visitor(router).log_in("root")
    status, body, _ = root.send("POST", "/auth/shares", b'{"doc": "' + b"x" * 100_000 + b'"}')
    assert status == 413 and "4096 bytes" in body["error"]
    if not router.proxies:  # the issuer's advice names what a share takes; behind the proxies a proxy answers
        assert '{"doc": "42", "user": "alice", "seconds": 300}' in body["error"], body
    assert router.process.poll() is None
