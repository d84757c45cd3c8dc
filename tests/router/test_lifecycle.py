"""A token's limits hold for the whole life of its session: expiry, refresh, revocation, and the
other ways to carry a token (Bearer header, Origin-checked cookie). Real router, real clients."""

import subprocess
import sys
import time

import jwt
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import reactor, task, threads

from tests.support.tokens import mint, unique
from tests.support.wamp import connect, refusal, wamp_error

ACK = PublishOptions(acknowledge=True)
# How far the GOODBYE may come after the deadline (exp + grace) on a loaded machine; the session
# must also still be served 1.5 s before the deadline (docs/reliability.md, timed bounds).
LATE = 3.0


async def admin(router):
    return await connect(router.url, mint("root", ["admin"]))


async def round_trip(client) -> None:
    """A request the router must answer: the session is still joined and served."""
    await client.publish("app.chat.lifecycle", "still here", options=ACK)


def expiry_grace(router) -> float:
    return router.config["workers"][0]["components"][0]["extra"]["session"]["expiry_grace_seconds"]


def leeway(router) -> float:
    return router.config["workers"][0]["components"][0]["extra"]["claims"]["leeway_seconds"]


def exp_of(token: str) -> int:
    return jwt.decode(token, options={"verify_signature": False})["exp"]


def end_times(client) -> list[float]:
    """The wall-clock time the session's GOODBYE arrived, once it does."""
    ended: list[float] = []
    client.left.addCallback(lambda details: (ended.append(time.time()), details)[1])
    return ended


async def until(wall_time: float) -> None:
    """Wait for a point in time (what an expiry test is about), not for a condition."""
    await task.deferLater(reactor, max(0.0, wall_time - time.time()), lambda: None)


@pytest_twisted.ensureDeferred
async def test_revoking_a_user_ends_their_live_session_within_a_second_and_refuses_the_token(router):
    name = unique("bob")
    token = mint(name, ["user"])
    bob, root = await connect(router.url, token), await admin(router)
    try:
        started, asked = time.monotonic(), time.time()
        answer = await root.call("authenticator.revoke", authid=name)
        goodbye = await bob.left.addTimeout(1, reactor)
        assert time.monotonic() - started < 1.0
        assert goodbye.reason == router.close_reason("authenticator.error.revoked")
        assert answer.keys() == {"sessions_ended", "tokens_issued_until"} and answer["sessions_ended"] == 1
        # up to when this user's tokens are refused: the revocation's time plus the leeway
        assert asked - 1 <= answer["tokens_issued_until"] - leeway(router) <= time.time() + 1
        assert (await refusal(router.url, token)).reason == "authenticator.error.revoked"
    finally:
        root.leave()


@pytest_twisted.ensureDeferred
async def test_revoking_one_token_by_jti_spares_the_users_other_sessions(router):
    name = unique("bob")
    one, other = mint(name, ["user"], jti=f"{name}-1"), mint(name, ["user"], jti=f"{name}-2")
    first, second, root = await connect(router.url, one), await connect(router.url, other), await admin(router)
    try:
        assert await root.call("authenticator.revoke", jti=f"{name}-1") == {"sessions_ended": 1}  # no iat bound
        assert (await first.left).reason == router.close_reason("authenticator.error.revoked")
        await round_trip(second)  # answered after first's GOODBYE: second was not ended with it
        assert not second.left.called
        assert (await refusal(router.url, one)).reason == "authenticator.error.revoked"
    finally:
        second.leave()
        root.leave()


@pytest_twisted.ensureDeferred
async def test_a_token_minted_before_the_revocation_by_a_fast_clock_is_refused_after_it(router):
    """Issue 20, finding 6: an issuer whose clock runs 8 s fast (inside the 10 s leeway) mints a
    token, then the user is revoked. The token's iat is after the router's time of the revocation,
    and the verifier accepts it (an iat up to the leeway ahead): the revocation covers it anyway."""
    name = unique("bob")
    minted_before = mint(name, ["user"], now=time.time() + 8)
    root = await admin(router)
    try:
        answer = await root.call("authenticator.revoke", authid=name)
    finally:
        root.leave()
    assert answer["tokens_issued_until"] >= jwt.decode(minted_before, options={"verify_signature": False})["iat"]
    assert (await refusal(router.url, minted_before)).reason == "authenticator.error.revoked"
    # The price, documented in docs/lifecycle.md: a token minted honestly right after the
    # revocation is within the leeway too, and refused the same way.
    assert (await refusal(router.url, mint(name, ["user"]))).reason == "authenticator.error.revoked"


@pytest_twisted.ensureDeferred
async def test_a_token_issued_after_the_revocation_and_its_leeway_logs_in_again(router):
    name = unique("bob")
    root = await admin(router)
    try:
        answer = await root.call("authenticator.revoke", authid=name)
    finally:
        root.leave()
    issued = int(answer["tokens_issued_until"]) + 1  # the first whole second after what is refused
    await until(issued - leeway(router))  # the verifier accepts an iat up to the leeway ahead of its clock
    client = await connect(router.url, mint(name, ["user"], now=issued))
    client.leave()


@pytest_twisted.ensureDeferred
async def test_revoke_needs_an_authid_or_a_jti(router):
    root = await admin(router)
    try:
        assert await wamp_error(root.call("authenticator.revoke")) == "wamp.error.invalid_argument"
    finally:
        root.leave()


@pytest_twisted.ensureDeferred
async def test_a_two_second_tokens_session_is_served_after_exp_and_ends_at_exp_plus_grace(router):
    token = mint(unique("eve"), ["user"], ttl=2)
    exp, grace = exp_of(token), expiry_grace(router)  # the shipped grace: 5 s
    client = await connect(router.url, token)
    ended = end_times(client)
    await until(exp + grace - 1.5)  # well past exp
    await round_trip(client)  # the grace holds: a session ended at exp fails here
    goodbye = await client.left.addTimeout(grace + LATE + 5, reactor)
    assert goodbye.reason == router.close_reason("authenticator.error.expired")
    assert exp + grace - 0.25 <= ended[0] <= exp + grace + LATE, ended[0] - exp


@pytest_twisted.ensureDeferred
async def test_refresh_moves_the_deadline_without_a_reconnect(router):
    name = unique("frank")
    client = await connect(router.url, mint(name, ["user"], ttl=2))
    answer = await client.call("authenticator.refresh", mint(name, ["user"], ttl=60))
    assert answer["exp"] > time.time() + 50
    # the old deadline (exp + 5 s grace) passes; the session is still there and working
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        assert not client.left.called
        await client.call("authenticator.refresh", mint(name, ["user"], ttl=60))
        await task.deferLater(reactor, 1, lambda: None)
    client.leave()


async def refresh_refusal(client, token) -> ApplicationError:
    try:
        await client.call("authenticator.refresh", token)
    except ApplicationError as error:
        return error
    raise AssertionError("refresh accepted a token it must refuse")


@pytest_twisted.ensureDeferred
async def test_refresh_with_another_users_or_a_wider_or_an_expired_token_is_refused_with_its_reason(router):
    name = unique("grace")
    client = await connect(router.url, mint(name, ["user"]))
    try:
        for label, token, reason in [
            ("another user's token", mint("mallory", ["user"]), "authenticator.error.refresh_refused"),
            ("a token with more roles", mint(name, ["user", "admin"]), "authenticator.error.refresh_refused"),
            ("an expired token", mint(name, ["user"], ttl=-60), "authenticator.error.expired"),
        ]:
            assert (await refresh_refusal(client, token)).error == reason, label
        await round_trip(client)  # the refusals left the session alone
    finally:
        client.leave()


@pytest_twisted.ensureDeferred
async def test_a_demoted_admin_refreshing_with_a_user_only_token_is_told_to_reconnect_and_keeps_its_deadline(router):
    """Crossbar cannot change a live session's role: a token with fewer roles is refused, and the
    admin session still ends at its own token's exp + grace. (The session's token has both roles,
    as an application's admins do: a refresh that only checked "no more roles" would accept it.)"""
    name = unique("demoted")
    token = mint(name, ["user", "admin"], ttl=2)
    exp, grace = exp_of(token), expiry_grace(router)
    client = await connect(router.url, token)
    ended = end_times(client)
    refused = await refresh_refusal(client, mint(name, ["user"], ttl=60))
    assert refused.error == "authenticator.error.refresh_refused"
    message = refused.args[0]
    # It says to reconnect, and does not suggest a token with fewer roles: that is what was refused.
    assert "reconnect" in message and "fewer roles" not in message, message
    await round_trip(client)  # refused, not ended
    goodbye = await client.left.addTimeout(grace + LATE + 5, reactor)
    assert goodbye.reason == router.close_reason("authenticator.error.expired")
    assert exp + grace - 0.25 <= ended[0] <= exp + grace + LATE, ended[0] - exp


@pytest_twisted.ensureDeferred
async def test_a_bearer_header_on_the_upgrade_logs_in_a_non_browser_client(router):
    name = unique("svc")
    client = await connect(router.url, headers={"Authorization": f"Bearer {mint(name, ['user'])}"})
    try:
        assert (client.details.authid, client.details.authrole) == (name, "user")
    finally:
        client.leave()


@pytest_twisted.ensureDeferred
async def test_a_bad_bearer_token_is_refused_with_its_reason(router):
    refused = await refusal(router.url, None, headers={"Authorization": f"Bearer {mint(ttl=-60)}"})
    assert refused.reason == "authenticator.error.expired"


@pytest_twisted.ensureDeferred
async def test_the_upgrade_reads_a_bearer_header_as_post_publish_does(router):
    """One Bearer parser (authenticator/core/carriers.bearer_token) for both carriers: a token
    that is not ASCII is malformed_token, a 'Bearer' without a token is missing_token."""
    not_ascii = await refusal(router.url, None, headers={"Authorization": "Bearer eyJ\u00e9.x.y"})
    assert (not_ascii.reason, "the token is not ASCII" in not_ascii.message) == (
        "authenticator.error.malformed_token", True), not_ascii.message  # fmt: skip
    empty = await refusal(router.url, None, headers={"Authorization": "Bearer   "})
    assert empty.reason == "authenticator.error.missing_token", empty.message


@pytest_twisted.ensureDeferred
async def test_the_token_cookie_works_from_an_allowed_origin(router):
    name = unique("web")
    headers = {"Cookie": f"theme=dark; cbjwt={mint(name, ['user'])}", "Origin": "http://127.0.0.1:8080"}
    client = await connect(router.url, headers=headers)
    try:
        assert client.details.authid == name
    finally:
        client.leave()


@pytest_twisted.ensureDeferred
async def test_the_token_cookie_is_refused_from_another_origin(router):
    headers = {"Cookie": f"cbjwt={mint('web', ['user'])}", "Origin": "https://evil.example"}
    refused = await refusal(router.url, None, headers=headers)
    assert refused.reason == "authenticator.error.origin_not_allowed"


@pytest_twisted.ensureDeferred
async def test_the_cli_revokes_against_a_running_router(router):
    name = unique("bob")
    bob = await connect(router.url, mint(name, ["user"]))
    command = [sys.executable, "-m", "authenticator", "revoke", "--authid", name, "--cbdir", str(router.cbdir)]
    result = await threads.deferToThread(
        subprocess.run, command, env=router.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "live sessions ended: 1" in result.stdout
    assert (await bob.left.addTimeout(5, reactor)).reason == router.close_reason("authenticator.error.revoked")
