"""Clients that attack the router as someone who has read its code would, through the real router
in both deployments: forged identities (forward_for), over-long URIs, retained events, logins
abandoned before they join, deeply nested messages, probing for registrations.

Each test fails without the code it names (docs/reliability.md, "Hostile clients")."""

from __future__ import annotations

import re
import time

import psutil
import pytest
import pytest_twisted
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions
from twisted.internet import defer

from tests.conftest import DEPLOYMENTS
from tests.support.raw_websocket import AUTHENTICATE, BINARY, CHALLENGE, HELLO, TEXT, RawWebSocket
from tests.support.router import RouterProcess, wait_for
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

NOT_AUTHORIZED = "wamp.error.not_authorized"
PROTOCOL_ERROR = 1002


def forged(victim) -> list[dict]:
    """A forward_for naming another session: Crossbar would present it as the publisher or caller."""
    return [{"session": victim._session_id, "authid": victim.details.authid, "authrole": victim.details.authrole}]


# -- 3. forward_for: publishing or calling as someone else ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_client_cannot_publish_as_another_user_even_after_an_honest_publish(router):
    topic = f"app.chat.{unique('room')}"
    alice, mallory, bob = [await connect(router.url, mint(unique(n), ["user"])) for n in ("alice", "mallory", "bob")]
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, topic, options=SubscribeOptions(details_arg="details"))
        # An honest publish first: were its ALLOW cached, the forged one would skip the authorizer.
        await mallory.publish(topic, "honest", options=PublishOptions(acknowledge=True))
        args, kwargs = await inbox.next()
        assert (args, kwargs["details"].publisher_authid) == (("honest",), mallory.details.authid)

        offset = router.log_size()
        error = await wamp_error(
            mallory.publish(topic, "forged", options=PublishOptions(acknowledge=True, forward_for=forged(alice)))
        )
        assert error == NOT_AUTHORIZED
        await mallory.publish(topic, "marker", options=PublishOptions(acknowledge=True))
        args, kwargs = await inbox.next()  # the forged event would have arrived before the marker
        assert (args, kwargs["details"].publisher_authid) == (("marker",), mallory.details.authid)
        line = router.wait_for_log("authorization denied: publish", after=offset)
        assert f"authid={mallory.details.authid}" in line and "forward_for is reserved for router links" in line
    finally:
        for client in (alice, mallory, bob):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_a_client_cannot_call_our_procedures_as_another_session(router):
    alice_name, mallory_name = unique("alice"), unique("mallory")
    alice = await connect(router.url, mint(alice_name, ["user"]))
    mallory = await connect(router.url, mint(mallory_name, ["user"]))
    try:
        # an honest refresh first (its ALLOW would be cached were calls cacheable)
        assert "exp" in await mallory.call("authenticator.refresh", mint(mallory_name, ["user"]))
        error = await wamp_error(
            mallory.call(
                "authenticator.refresh", mint(alice_name, ["user"]), options=CallOptions(forward_for=forged(alice))
            )
        )
        assert error == NOT_AUTHORIZED  # not refresh_refused: the call never reached refresh as alice
    finally:
        alice.leave()
        mallory.leave()


# -- what a WELCOME tells a browser -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_welcome_carries_no_host_name_process_id_or_echo_of_the_clients_headers(router):
    """Crossbar adds x_cb_node (the host name), x_cb_pid, ... and, behind proxies, `transport` with
    every header of the upgrade: the page could read its own HttpOnly token cookie back."""
    token = mint(unique("alice"), ["user"])
    headers = {"Cookie": f"cbjwt={token}", "Origin": "http://127.0.0.1:8080"}
    cookie_user = await connect(router.url, authmethods=["anonymous"], headers=headers)
    visitor = await connect(router.url, authmethods=["anonymous"])
    try:
        assert cookie_user.details.authmethod == "anonymous" and cookie_user.details.authrole == "user"
        for client in (cookie_user, visitor):
            extra = client.details.authextra
            assert set(extra) - {"login", "expires_in"} == {"roles", "exp"}, extra  # login: behind proxies
            assert ("expires_in" in extra) == (extra["exp"] is not None), extra  # a token's seconds left
            assert token not in repr(extra)
    finally:
        cookie_user.leave()
        visitor.leave()


# -- 4. over-long URIs ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_over_long_uri_is_refused_by_name_and_logged_in_a_bounded_line(router):
    visitor = await connect(router.url, authmethods=["anonymous"])
    try:
        assert await wamp_error(visitor.subscribe(print, "app.public." + "x" * 600)) == NOT_AUTHORIZED
        offset = router.log_size()
        huge = "app.public." + "y" * 60_000  # under the 64 KiB message limit
        assert await wamp_error(visitor.subscribe(print, huge)) == NOT_AUTHORIZED
        line = router.wait_for_log("the URI is longer than 512 characters", after=offset)
        await visitor.subscribe(print, "app.public.news")  # still served
        written = router.log()[offset:]
        assert len(line) < 1000 and "y" * 300 not in written, f"{len(written)} characters logged"
    finally:
        visitor.leave()


# -- 7. retained events --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_retain_is_refused_unless_a_rule_allows_it_and_nothing_is_retained(router):
    topic = f"app.chat.{unique('room')}"
    mallory = await connect(router.url, mint(unique("mallory"), ["user"]))
    try:
        error = await wamp_error(
            mallory.publish(topic, "pinned", options=PublishOptions(acknowledge=True, retain=True))
        )
        assert error == NOT_AUTHORIZED
        late = await connect(router.url, mint(unique("bob"), ["user"]))
        try:
            inbox = Inbox()
            await late.subscribe(inbox, topic, options=SubscribeOptions(get_retained=True))
            await mallory.publish(topic, "marker", options=PublishOptions(acknowledge=True))
            assert (await inbox.next())[0] == ("marker",)  # a retained event would have come first
        finally:
            late.leave()
    finally:
        mallory.leave()


# -- 9. logins abandoned before they join -------------------------------------------------------


def abandon_logins(port: int, token: str, count: int) -> None:
    """HELLO, CHALLENGE, AUTHENTICATE, and close before the WELCOME: the authenticator accepts each."""
    for _ in range(count):
        ws = RawWebSocket(port)
        ws.send_wamp([HELLO, "realm1", {"roles": {"subscriber": {}}, "authmethods": ["ticket"]}])
        opcode, payload = ws.next_frame(time.monotonic() + 10)
        assert payload.startswith(f"[{CHALLENGE},".encode()), payload
        ws.send_wamp([AUTHENTICATE, token, {}])
        ws.close()


@pytest_twisted.ensureDeferred
async def test_logins_closed_before_they_join_are_not_live_sessions(router):
    name = unique("phantom")
    offset = router.log_size()
    abandon_logins(router.port, mint(name, ["user"]), 30)
    if router.loglevel == "info":
        wait_for(lambda: router.log()[offset:].count(f"authentication accepted: authid={name}") == 30, 10, "30 logins")
    live = await connect(router.url, mint(name, ["user"]))
    root = await connect(router.url, mint(unique("root"), ["admin"]))
    try:
        # only the one session that joined is ended; the 30 abandoned logins are not counted
        assert await root.call("authenticator.revoke", authid=name) == {"sessions_ended": 1}
        await live.left
    finally:
        root.leave()


def test_logins_that_never_join_are_dropped_from_the_table_after_the_join_timeout(tmp_path):
    """Behind proxies the proxy answers the client only after the router's authenticator did, so a
    client that closes in between leaves a login that never joins (the single worker answers
    within the same reactor turn, and its abandoned sessions join and leave)."""

    def short_join_timeout(config):
        config["workers"][0]["components"][0]["extra"]["session"]["join_timeout_seconds"] = 1

    node = RouterProcess(tmp_path, env={"JWT_SECRET": TEST_SECRET}, edit_config=short_join_timeout, proxies=2)
    node.start()
    try:
        offset = node.log_size()
        abandon_logins(node.port, mint(unique("phantom"), ["user"]), 5)
        # the table is not reachable from outside: the sweep logs what it dropped
        wait_for(lambda: dropped(node.log()[offset:]) == 5, 10, "5 abandoned logins to be dropped")
    finally:
        assert node.stop() == 0


def dropped(log: str) -> int:
    return sum(int(m) for m in re.findall(r"dropped (\d+) login\(s\) that never joined", log))


# -- 10. probing for registrations ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_refused_register_of_an_existing_procedure_answers_as_crossbar_26_does(router):
    """Crossbar 26.10.1's dealer checks for an existing registration before it sends the refusal
    (router/dealer.py, processRegister: the not_authorized reply is built but not sent): a client
    learns that `authenticator.refresh` exists. Documented (docs/reliability.md); this test fails
    when Crossbar fixes it, and the docs must then change."""
    mallory = await connect(router.url, mint(unique("mallory"), ["user"]))
    try:
        assert (
            await wamp_error(mallory.register(print, "authenticator.refresh")) == "wamp.error.procedure_already_exists"
        )
        assert await wamp_error(mallory.register(print, f"app.{unique('nothing')}")) == NOT_AUTHORIZED
        options = RegisterOptions(force_reregister=True)
        assert await wamp_error(mallory.register(print, "authenticator.refresh", options=options)) == NOT_AUTHORIZED
    finally:
        mallory.leave()


# -- 6. memory that clients can pin ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_distinct_topics_do_not_grow_the_router_for_good(tmp_path):
    """Each cacheable answer stays in Crossbar's never-evicting cache: past the component's budget
    (here 200) answers are given uncached, so subscribing and dropping fresh topics reuses memory."""

    def small_budget(config):
        config["workers"][0]["components"][0]["extra"]["limits"] = {"authorization_cache_entries": 200}

    node = RouterProcess(tmp_path, env={"JWT_SECRET": TEST_SECRET}, edit_config=small_budget, loglevel="warn").start()
    try:
        worker = psutil.Process(node.worker_pids()[0])
        grown = await churn_topics(node, worker)
    finally:
        assert node.stop() == 0
    mib = 2**20
    print(f"\nrouter worker growth per 4,000 fresh topics after warm-up: {[round(g / mib, 2) for g in grown]} MiB")
    # ~4 MiB per round when every answer is cached (measured); reused memory stays near 0
    assert max(grown) < 1.5 * mib, grown


async def churn_topics(node, worker) -> list[int]:
    visitor = await connect(node.url, authmethods=["anonymous"])
    rounds, per_round, growth = 4, 4000, []
    try:
        previous = None
        for r in range(rounds):
            for start in range(0, per_round, 200):
                topics = [f"app.public.{r}.{i}." + "t" * 400 for i in range(start, start + 200)]
                subscriptions = await defer.gatherResults([visitor.subscribe(print, t) for t in topics])
                await defer.gatherResults([s.unsubscribe() for s in subscriptions])
            rss = worker.memory_info().rss
            if previous is not None and r >= 2:  # rounds 0 and 1 warm up allocator and budget
                growth.append(rss - previous)
            previous = rss
    finally:
        visitor.leave()
    return growth


# -- 1, 2. deeply nested messages -------------------------------------------------------------


def parsers_exposed(config: dict) -> None:
    """The shipped config offers only JSON with a 64 KiB limit; here ubjson too and 256 KiB, so
    that the recursion limit itself is what stands between a nested message and the C stack."""
    ws = config["workers"][0]["transports"][0]["paths"]["ws"]
    ws["serializers"] = ["json", "ubjson"]
    ws.setdefault("options", {})["max_message_size"] = 256 * 1024


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def exposed(request, tmp_path_factory):
    node = RouterProcess(
        tmp_path_factory.mktemp(f"exposed-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
        edit_config=parsers_exposed, proxies=DEPLOYMENTS[request.param],
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


@pytest.mark.parametrize(("subprotocol", "opcode"), [("wamp.2.ubjson", BINARY), ("wamp.2.json", TEXT)])
def test_a_deeply_nested_message_is_refused_at_once_and_logged_in_bounded_lines(exposed, subprotocol, opcode):
    """200,000 '[' before any HELLO: with py_ecc's recursion limit the ubjson parser overflowed the
    C stack (SIGSEGV, the node stopped) and the JSON parser's 100,000-frame traceback froze the
    worker for ~40 s while megabytes were logged."""
    offset = exposed.log_size()
    ws = RawWebSocket(exposed.port, (subprotocol,))
    try:
        assert ws.headers.get("sec-websocket-protocol") == subprotocol
        started = time.monotonic()
        ws.send(b"[" * 200_000, opcode)
        ended = ws.wait_for_end(30)
    finally:
        ws.close()
    assert ended.close_code == PROTOCOL_ERROR, ended
    print(f"\n{subprotocol}: closed after {time.monotonic() - started:.2f} s")
    ok = RawWebSocket(exposed.port)  # the node still serves
    try:
        assert isinstance(ok.join(mint(unique("alice"), ["user"])), int)
    finally:
        ok.close()
    written = exposed.log()[offset:]
    longest = max(map(len, written.splitlines()), default=0)
    assert longest <= 2500 and len(written) < 50_000, (len(written), longest)
