"""Authentication through a real crossbar node with real Autobahn clients."""

import base64
import json
import time

import pytest
import pytest_twisted

from authenticator.core.reasons import Reason
from tests.support.tokens import mint, unique
from tests.support.wamp import connect, refusal


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(**claims) -> str:
    return b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + "."


BAD_TOKENS = {
    "missing_token": lambda: "",
    "malformed_token": lambda: "this.is-not.a-jwt!",
    "invalid_signature": lambda: mint(secret="a-different-secret-that-is-long-enough-1234"),
    "algorithm_not_allowed": lambda: unsigned(sub="mallory", roles=["admin"], exp=int(time.time()) + 60),
    "unknown_key": lambda: mint(headers={"kid": "retired-2019"}),
    "expired": lambda: mint(ttl=-60),
    "not_yet_valid": lambda: mint(nbf=int(time.time()) + 3600),
    "missing_claim": lambda: mint(exp=None),
    "invalid_claim": lambda: mint(sub="alice.admin"),
    "unknown_role": lambda: mint(roles=["superuser"]),
}


@pytest_twisted.ensureDeferred
async def test_a_good_token_joins_with_its_subject_role_and_expiry(router):
    token = mint("alice", ["user"], ttl=120)
    client = await connect(router.url, token)
    try:
        assert client.details.authid == "alice"
        assert client.details.authrole == "user"
        assert client.details.authmethod == "ticket"
        assert client.details.authextra["roles"] == ["user"]
        assert abs(client.details.authextra["exp"] - (time.time() + 120)) < 5
    finally:
        client.leave()


@pytest_twisted.ensureDeferred
async def test_a_token_with_several_roles_joins_with_the_most_privileged(router):
    client = await connect(router.url, mint("root", ["user", "admin"]))
    try:
        assert client.details.authrole == "admin"
        assert client.details.authextra["roles"] == ["user", "admin"]
    finally:
        client.leave()


@pytest.mark.parametrize("reason", sorted(BAD_TOKENS))
@pytest_twisted.ensureDeferred
async def test_each_bad_token_is_refused_with_its_reason(router, reason):
    offset = router.log_size()
    refused = await refusal(router.url, BAD_TOKENS[reason]())
    assert refused.reason == f"authenticator.error.{reason}"
    assert refused.message and "." in refused.message  # says what is wrong and what to do
    line = router.wait_for_log(f"authentication refused: reason={reason}", after=offset)
    assert "peer=tcp4:127.0.0.1:" in line


@pytest_twisted.ensureDeferred
async def test_the_router_still_accepts_a_good_token_after_100_bad_ones(router):
    bad = list(BAD_TOKENS.values())
    for i in range(100):
        await refusal(router.url, bad[i % len(bad)]())
    client = await connect(router.url, mint("alice", ["user"]))
    assert client.details.authid == "alice"
    client.leave()


@pytest_twisted.ensureDeferred
async def test_each_login_writes_one_log_line_with_its_jti_and_never_the_token(router):
    offset = router.log_size()
    good = mint("erin", ["user"], jti="jti-good-1")
    bad = mint("erin", ["user"], ttl=-60, jti="jti-bad-1")
    client = await connect(router.url, good)
    client.leave()
    await refusal(router.url, bad)
    accepted = router.wait_for_log("authentication accepted: authid=erin", after=offset)
    refused = router.wait_for_log("jti=jti-bad-1", after=offset)
    assert "role=user" in accepted and "jti=jti-good-1" in accepted
    assert "reason=expired" in refused
    log = router.log()[offset:]
    for token in (good, bad):
        for part in token.split("."):
            assert part not in log


@pytest_twisted.ensureDeferred
async def test_a_refused_login_is_logged_once_with_its_reason(router):
    """One line per refusal (ours); Autobahn's onUserError would add the client's message again."""
    offset = router.log_size()
    name, marker = unique("erin"), unique("marker")
    await refusal(router.url, mint(name, ["superuser"]))
    await refusal(router.url, mint(marker, ["superuser"]))  # logged after every line of the first
    router.wait_for_log(f"authid={marker}", after=offset)
    message = Reason.UNKNOWN_ROLE.value[1]
    lines = [line for line in router.log()[offset:].splitlines() if name in line or message in line]
    assert len(lines) == 1 and "authentication refused: reason=unknown_role" in lines[0], lines
