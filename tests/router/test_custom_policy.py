"""A custom policy through the real router, in both deployments:

- a token with several unrelated roles: the session's Crossbar role is one of them, its permissions
  are the union (behind proxies Crossbar marks every session anonymous-proxy, so the roles must
  come from what the authenticator verified, not from the session);
- a role-wide *exact* rule: Crossbar's cache ignores the match type, so its ALLOW must not be
  cached, or a later prefix request on the same URI would get it (in both orders)."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.types import RegisterOptions, SubscribeOptions

from tests.conftest import DEPLOYMENTS
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect, wamp_error

NOT_AUTHORIZED = "wamp.error.not_authorized"
EXTRA_ROLES = [
    {"name": "editor", "rules": [{"uri": "app.docs.", "match": "prefix", "allow": {"subscribe": True}}]},
    {"name": "billing", "rules": [{"uri": "app.invoices.", "match": "prefix", "allow": {"subscribe": True}}]},
]


EXACT_RULE = {"uri": "app.news", "match": "exact", "allow": {"subscribe": True, "register": True}}


def custom_policy(config: dict) -> None:
    router = config["workers"][0]
    router["realms"][0]["roles"] += [{"name": r["name"], "authorizer": "authenticator.authorize"} for r in EXTRA_ROLES]
    policy = router["components"][0]["extra"]["policy"]
    policy["roles"] += EXTRA_ROLES
    user = next(role for role in policy["roles"] if role["name"] == "user")
    user["rules"].append(EXACT_RULE)


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def node(request, tmp_path_factory):
    node = RouterProcess(
        tmp_path_factory.mktemp(f"roles-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
        edit_config=custom_policy, proxies=DEPLOYMENTS[request.param],
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


@pytest_twisted.ensureDeferred
async def test_a_session_has_the_union_of_its_tokens_roles(node):
    both = await connect(node.url, mint(unique("erin"), ["editor", "billing"]))
    try:
        assert both.details.authrole == "billing"  # defined later: it wins
        await both.subscribe(print, "app.invoices.2026")
        await both.subscribe(print, "app.docs.handbook")  # through the token's other role
    finally:
        both.leave()


@pytest_twisted.ensureDeferred
async def test_a_session_of_the_same_role_without_the_other_role_is_refused(node):
    # the same Crossbar role as above, and asked after it: the extra role's answer was not cached
    billing = await connect(node.url, mint(unique("frank"), ["billing"]))
    try:
        assert billing.details.authrole == "billing"
        assert await wamp_error(billing.subscribe(print, "app.docs.handbook")) == "wamp.error.not_authorized"
    finally:
        billing.leave()


@pytest_twisted.ensureDeferred
async def test_roles_claimed_in_a_hello_count_for_nothing(node):
    visitor = await connect(node.url, authmethods=["anonymous"], authextra={"roles": ["editor"], "login": "login-x"})
    try:
        assert await wamp_error(visitor.subscribe(print, "app.docs.handbook")) == "wamp.error.not_authorized"
    finally:
        visitor.leave()


# -- an exact rule's answer is not reused for other match types ---------------------------------


async def outcome(request) -> str:
    try:
        await request
    except Exception as error:  # noqa: BLE001 - the WAMP error URI is the outcome
        return getattr(error, "error", type(error).__name__)
    return "allowed"


@pytest.mark.parametrize("action", ["subscribe", "register"])
@pytest.mark.parametrize("exact_first", [True, False], ids=["exact-first", "prefix-first"])
@pytest_twisted.ensureDeferred
async def test_an_exact_rule_never_allows_a_prefix_request_on_its_uri(node, action, exact_first):
    # Crossbar's cache outlives a case: were an ALLOW cached, every later case would see it too.
    first = await connect(node.url, mint(unique("ann"), ["user"]))
    second = await connect(node.url, mint(unique("ben"), ["user"]))
    try:

        def ask(client, match):
            options = (SubscribeOptions if action == "subscribe" else RegisterOptions)(match=match)
            return getattr(client, action)(print, EXACT_RULE["uri"], options=options)

        order = [(first, "exact"), (second, "prefix")] if exact_first else [(second, "prefix"), (first, "exact")]
        results = {match: await outcome(ask(client, match)) for client, match in order}
        results["prefix again"] = await outcome(ask(second, "prefix"))
    finally:
        first.leave()
        second.leave()
    assert results == {"exact": "allowed", "prefix": NOT_AUTHORIZED, "prefix again": NOT_AUTHORIZED}
