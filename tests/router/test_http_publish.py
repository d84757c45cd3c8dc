"""POST /publish through a real crossbar node (both deployments): a backend publishes with a token,
under the same policy, and subscribers see it as from a WAMP publisher."""

from __future__ import annotations

import json
import socket
import time

import pytest
import pytest_twisted
import treq
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import threads

from tests.router.test_metrics import scrape, value
from tests.router.test_request_bodies import TO_PUBLISH
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect

DETAILS = SubscribeOptions(details_arg="details")


def publish_url(router) -> str:
    return f"http://127.0.0.1:{router.port}/publish"


async def post(router, body, token: str | None = None, *, headers: dict | None = None, method: str = "POST"):
    """(status, headers, JSON answer) of one request to /publish."""
    sent = {"Content-Type": ["application/json"], **{k: [v] for k, v in (headers or {}).items()}}
    if token is not None:
        sent["Authorization"] = [f"Bearer {token}"]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await treq.request(method, publish_url(router), data=data, headers=sent, timeout=10)
    text = await response.text()
    return response.code, response.headers, (json.loads(text) if text else None)


def backend_token(name: str | None = None, **claims) -> str:
    return mint(name or unique("backend"), ["backend"], **claims)


@pytest_twisted.ensureDeferred
async def test_bob_receives_what_the_backend_publishes_to_him_and_alice_does_not(router):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice, bob = await connect(router.url, mint(alice_id)), await connect(router.url, mint(bob_id))
    try:
        alice_inbox, bob_inbox = Inbox(), Inbox()
        await alice.subscribe(alice_inbox, f"app.user.{alice_id}.notifications", options=DETAILS)
        # Every subscription that would receive bob's event if the policy let it: each is refused,
        # and were one granted, its events would come to the same inbox before alice's marker.
        tried = {}
        for topic, match in ((f"app.user.{bob_id}.notifications", "exact"), ("app.user.", "prefix"),
                             ("app.user..notifications", "wildcard"), ("app.", "prefix"), ("", "prefix")):  # fmt: skip
            options = SubscribeOptions(match=match, details_arg="details")
            tried[(topic, match)] = await alice.subscribe(alice_inbox, topic, options=options).addCallbacks(
                lambda _: "subscribed", lambda failure: failure.value.error
            )
        await bob.subscribe(bob_inbox, f"app.user.{bob_id}.notifications", options=DETAILS)
        backend = unique("backend")
        status, headers, answer = await post(
            router, {"topic": f"app.user.{bob_id}.notifications", "args": ["report ready"], "kwargs": {"n": 1}},
            backend_token(backend),
        )  # fmt: skip
        assert status == 200, answer
        assert isinstance(answer["id"], int)
        assert headers.getRawHeaders("cache-control") == ["no-store"]
        args, kwargs = await bob_inbox.next()
        details = kwargs.pop("details")
        assert (args, kwargs) == (("report ready",), {"n": 1})
        # as from a WAMP publisher of that identity: disclosed by the backend rule, never forwarded
        assert (details.publisher_authid, details.publisher_authrole) == (backend, "backend")
        assert details.forward_for is None
        # the marker: alice's own event arrives after bob's, and it is the first thing she gets
        await post(router, {"topic": f"app.user.{alice_id}.notifications", "args": ["marker"]}, backend_token())
        args, _ = await alice_inbox.next()
        assert args == ("marker",)
        assert alice_inbox.events == []
        assert set(tried.values()) == {"wamp.error.not_authorized"}, tried
    finally:
        alice.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_the_publisher_is_the_tokens_identity_never_one_from_the_body(router):
    bob_id = unique("bob")
    bob = await connect(router.url, mint(bob_id))
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, f"app.user.{bob_id}.notifications", options=DETAILS)
        offset = router.log_size()
        for option in ("forward_for", "disclose_me", "publisher_authid"):
            forged = [{"session": 1, "authid": "root", "authrole": "admin"}] if option == "forward_for" else "root"
            body = {"topic": f"app.user.{bob_id}.notifications", "args": ["forged"], "options": {option: forged}}
            status, _, answer = await post(router, body, backend_token())
            assert status == 400, answer
            assert answer["error"] == "wamp.error.invalid_argument"
            assert f"Option '{option}' is not accepted over HTTP" in answer["message"]
        router.wait_for_log("http publish refused: status=400 reason=wamp.error.invalid_argument", after=offset)
        # the marker: a plain publication arrives, and nothing forged came before it
        backend = unique("backend")
        await post(router, {"topic": f"app.user.{bob_id}.notifications", "args": ["real"]}, backend_token(backend))
        args, kwargs = await inbox.next()
        assert args == ("real",) and kwargs["details"].publisher_authid == backend
        assert inbox.events == []
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_policy_denial_is_403_with_the_rule_that_decided(router):
    carol = unique("carol")
    offset = router.log_size()
    # a user may publish to chat, not to someone's notifications
    status, _, answer = await post(router, {"topic": "app.user.bob.notifications", "args": [1]}, mint(carol))
    assert status == 403, answer
    assert answer["error"] == "wamp.error.not_authorized"
    assert f"as '{carol}' (role 'user')" in answer["message"] and "no rule" in answer["message"]
    router.wait_for_log(
        f"authorization denied: publish app.user.bob.notifications authid={carol} role=user via=http", after=offset
    )
    # and the same token may publish where its rules allow it
    status, _, answer = await post(router, {"topic": "app.chat.lobby", "args": ["hi"]}, mint(carol))
    assert status == 200, answer


@pytest_twisted.ensureDeferred
async def test_token_refusals_are_401_with_reason_and_challenge(router):
    cases = {
        "expired": mint(unique("backend"), ["backend"], ttl=-60),
        "invalid_signature": mint(unique("backend"), ["backend"], secret="another-secret-of-32-bytes-or-more!"),
        "malformed_token": "not-a-jwt",
    }
    for reason, token in cases.items():
        offset = router.log_size()
        status, headers, answer = await post(router, {"topic": "app.public.news"}, token)
        assert status == 401, (reason, answer)
        assert answer["error"] == f"authenticator.error.{reason}"
        assert headers.getRawHeaders("www-authenticate") == ['Bearer realm="realm1", error="invalid_token"']
        line = router.wait_for_log(f"http publish refused: status=401 reason={reason}", after=offset)
        assert token not in line
    status, headers, answer = await post(router, {"topic": "app.public.news"})
    assert status == 401 and answer["error"] == "authenticator.error.missing_token"
    assert "Authorization: Bearer" in answer["message"]
    assert headers.getRawHeaders("www-authenticate") == ['Bearer realm="realm1"']
    status, _, answer = await post(router, {"topic": "app.public.news"}, headers={"Authorization": "Basic YTpi"})
    assert status == 401 and answer["error"] == "authenticator.error.missing_token", answer


@pytest_twisted.ensureDeferred
async def test_a_revoked_token_is_refused(router):
    backend = unique("backend")
    token = backend_token(backend)
    status, _, _ = await post(router, {"topic": "app.public.news"}, token)
    assert status == 200
    admin = await connect(router.url, mint("root", ["admin"]))
    try:
        await admin.call("authenticator.revoke", authid=backend)
    finally:
        admin.leave()
    status, _, answer = await post(router, {"topic": "app.public.news"}, token)
    assert status == 401 and answer["error"] == "authenticator.error.revoked", answer


@pytest_twisted.ensureDeferred
async def test_malformed_bodies_are_400_and_say_why(router):
    token = backend_token()
    cases = [
        (b"{not json", "not JSON"),
        (b'"a string"', "must be a JSON object"),
        (json.dumps({"args": [1]}).encode(), "'topic' must be a non-empty string"),
        (json.dumps({"topic": "app..news"}).encode(), "not a valid WAMP URI"),
        (json.dumps({"topic": "app.public.news", "args": {"a": 1}}).encode(), "'args' must be a JSON list"),
        (json.dumps({"topic": "app.public.news", "kwarg": {}}).encode(), "did you mean 'kwargs'"),
        (json.dumps({"topic": "app.public.news", "options": {"acknowledge": False}}).encode(), "always true"),
        (b'{"topic": "app.public.news", "args": ' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper"),
        # far past the parser's recursion limit, within the body limit: refused, the worker lives on
        (b'{"topic": "app.public.news", "args": ' + b"[" * 30000 + b"]" * 30000 + b"}", "nested deeper"),
        (json.dumps([]).encode(), "batch is empty"),
        (json.dumps([{"topic": "app.public.news"}] * 101).encode(), "at most 100"),
    ]  # fmt: skip
    for body, expected in cases:
        status, _, answer = await post(router, body, token)
        assert status == 400, (body[:60], answer)
        assert answer["error"] == "wamp.error.invalid_argument" and expected in answer["message"], (body[:60], answer)
    plain = {"Content-Type": "text/plain"}
    status, _, answer = await post(router, b'{"topic": "app.public.news"}', token, headers=plain)
    assert status == 400 and "Content-Type" in answer["message"], answer


@pytest_twisted.ensureDeferred
async def test_other_methods_are_405(router):
    response = await treq.get(publish_url(router), timeout=10)
    assert response.code == 405
    assert response.headers.getRawHeaders("allow") == ["POST"]
    assert json.loads(await response.text())["error"] == "wamp.error.invalid_argument"


@pytest_twisted.ensureDeferred
async def test_a_body_over_the_limit_is_413(router):
    token = backend_token()
    big = json.dumps({"topic": "app.public.news", "args": ["x" * 70000]}).encode()
    status, _, answer = await post(router, big, token)
    assert status == 413, answer
    assert "larger than 65536 bytes" in answer["message"]


@pytest.mark.parametrize("path", TO_PUBLISH)
def test_a_body_over_the_limit_is_refused_before_it_is_read(router, path):
    """A declared Content-Length over the limit is answered 413 while the body has not been sent:
    the router does not take the bytes first, however the path is spelled (as Twisted routes it;
    more spellings and paths in test_request_bodies.py). The refusal is logged with the client
    (and, in the router worker, counted)."""
    refuse_a_huge_body(router, path)


def refuse_a_huge_body(router, path: str) -> None:
    offset = router.log_size()
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n{" % path.encode()
        )
        answer = s.recv(4096)
        port = s.getsockname()[1]
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than 65536 bytes" in answer
    line = router.wait_for_log(f"peer=127.0.0.1:{port}", after=offset)
    assert "http request refused: status=413 reason=too_large" in line and f"path={path}" in line


@pytest.mark.parametrize("path", TO_PUBLISH)
def test_a_chunked_body_is_cut_off_when_it_passes_the_limit(router, path):
    """No Content-Length: the bytes are counted as they come, and the connection is answered 413
    and closed while the client is still sending."""
    chunk = b"x" * 16384
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" % path.encode())  # fmt: skip
        answer = b""
        try:
            for _ in range(64):  # 1 MiB offered; the limit is 64 KiB
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the router: what the test wants
        try:
            while part := s.recv(4096):
                answer += part
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest_twisted.ensureDeferred
async def test_a_batch_is_answered_in_order_and_a_denial_does_not_stop_the_others(router):
    bob_id = unique("bob")
    bob = await connect(router.url, mint(bob_id))
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, f"app.user.{bob_id}.notifications")
        batch = [
            {"topic": f"app.user.{bob_id}.notifications", "args": ["first"]},
            {"topic": "app.secret.plans", "args": ["denied"]},
            {"topic": "not a uri"},
            {"topic": f"app.user.{bob_id}.notifications", "args": ["last"]},
        ]
        status, _, answer = await post(router, batch, backend_token())
        assert status == 200, answer
        assert [sorted(item) for item in answer] == [["id"], ["error", "message"], ["error", "message"], ["id"]]
        assert [item.get("error") for item in answer] == [
            None, "wamp.error.not_authorized", "wamp.error.invalid_argument", None,
        ]  # fmt: skip
        assert (await inbox.next())[0] == ("first",)
        assert (await inbox.next())[0] == ("last",)
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_receiver_filters_choose_by_authid(router):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice, bob = await connect(router.url, mint(alice_id)), await connect(router.url, mint(bob_id))
    try:
        alice_inbox, bob_inbox = Inbox(), Inbox()
        await alice.subscribe(alice_inbox, "app.public.news")
        await bob.subscribe(bob_inbox, "app.public.news")
        token = backend_token()
        options = {"eligible_authid": [alice_id]}
        status, _, answer = await post(router, {"topic": "app.public.news", "args": ["only alice"], "options": options},
                                       token)  # fmt: skip
        assert status == 200, answer
        await post(router, {"topic": "app.public.news", "args": ["marker"], "options": {"exclude_authid": [alice_id]}},
                   token)  # fmt: skip
        assert (await alice_inbox.next())[0] == ("only alice",)
        assert (await bob_inbox.next())[0] == ("marker",)  # bob's first event is the marker
        assert alice_inbox.events == []
    finally:
        alice.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_http_publishes_are_counted_by_outcome(router):
    """Counters of the shared router: what this test adds, read before and after."""
    before = await threads.deferToThread(scrape, router)
    await threads.deferToThread(refuse_a_huge_body, router, "/%70ublish")
    assert (await post(router, {"topic": "app.public.news"}, backend_token()))[0] == 200
    assert (await post(router, {"topic": "app.secret"}, backend_token()))[0] == 403
    after = await threads.deferToThread(scrape, router)

    def grew(outcome: str) -> float:
        return value(after, "crossbar_jwt_http_publishes_total", outcome=outcome, reason="none") - value(
            before, "crossbar_jwt_http_publishes_total", outcome=outcome, reason="none"
        )

    assert (grew("published"), grew("denied")) == (1, 1)
    # behind proxies a proxy worker refuses the body over the limit, and counts nothing of ours
    assert grew("too_large") == (0 if router.proxies else 1)


@pytest_twisted.ensureDeferred
async def test_backend_identities_that_publish_are_not_live_sessions(router):
    """Issue 20, finding 10: each identity that publishes over HTTP gets an embedded session (kept
    for reuse); crossbar_jwt_active_sessions counted them as client sessions (1,000 `user` sessions
    after 3,000 backends published). K distinct identities, of two roles, publish: the gauge of
    live sessions does not move."""
    count = 25

    def live(samples: dict) -> list[float]:
        return [value(samples, "crossbar_jwt_active_sessions", role=role) for role in ("backend", "user")]

    def settled() -> dict:
        """Sessions of earlier tests on the shared router may still be leaving: two equal readings."""
        previous = scrape(router)
        for _ in range(50):
            time.sleep(0.1)
            current = scrape(router)
            if live(current) == live(previous):
                return current
            previous = current
        raise AssertionError("the live sessions never settled")

    before = await threads.deferToThread(settled)
    for i in range(count):
        assert (await post(router, {"topic": "app.public.news"}, backend_token()))[0] == 200
        user = mint(unique("writer"), ["user"])  # a user may publish to app.chat. over HTTP too
        assert (await post(router, {"topic": f"app.chat.{unique('room')}", "args": [i]}, user))[0] == 200
    after = await threads.deferToThread(scrape, router)
    assert live(after) == live(before)  # [backend, user]; with the embedded sessions: + [25, 25]
    assert value(after, "crossbar_jwt_active_sessions_scrape_ok") == 1


@pytest.fixture(scope="module")
def single_use_router(tmp_path_factory):
    def single_use(config):
        config["workers"][0]["components"][0]["extra"]["single_use"] = True

    node = RouterProcess(
        tmp_path_factory.mktemp("single-use-http"), env={"JWT_SECRET": TEST_SECRET}, edit_config=single_use
    ).start()
    yield node
    assert node.stop() == 0, node.log()[-3000:]


@pytest_twisted.ensureDeferred
async def test_a_single_use_token_publishes_once_and_its_replay_is_refused(single_use_router):
    token = backend_token(jti=unique("jti"))
    status, _, answer = await post(single_use_router, {"topic": "app.public.news"}, token)
    assert status == 200, answer
    offset = single_use_router.log_size()
    status, headers, answer = await post(single_use_router, {"topic": "app.public.news"}, token)
    assert status == 401 and answer["error"] == "authenticator.error.replayed", answer
    assert headers.getRawHeaders("www-authenticate") == ['Bearer realm="realm1", error="invalid_token"']
    single_use_router.wait_for_log("http publish refused: status=401 reason=replayed", after=offset)
    # a fresh token publishes: the store answers, it is the replay that is refused
    status, _, answer = await post(single_use_router, {"topic": "app.public.news"}, backend_token(jti=unique("jti")))
    assert status == 200, answer


@pytest_twisted.ensureDeferred
async def test_no_token_and_no_secret_reach_the_log(router):
    token = backend_token()
    await post(router, {"topic": "app.public.news"}, token)
    await post(router, {"topic": "app.secret"}, token)
    await post(router, b"{bad", token)
    expired = mint(unique("backend"), ["backend"], ttl=-60)
    await post(router, {"topic": "app.public.news"}, expired)
    log = router.log()
    assert "http publish refused: status=401 reason=expired" in log
    for secret in (token, expired, token.split(".")[2], TEST_SECRET):
        assert secret not in log
