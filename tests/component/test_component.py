"""The Autobahn component's handlers, called directly (no router): failure paths that a real
router cannot be made to produce on demand."""

import time

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from twisted.internet.defer import Deferred, maybeDeferred

from authenticator.config.node_config import component_extra
from authenticator.server.component import AuthenticatorComponent
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET, mint


@pytest.fixture
def component(monkeypatch, tmp_path):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    extra = {**component_extra(REPO / ".crossbar" / "config.json"), "cbdir": str(tmp_path)}
    component = AuthenticatorComponent(ComponentConfig(realm="realm1", extra=extra))
    component._io.start()
    yield component
    component._io.stop()


DETAILS = {"transport": {"peer": "tcp4:127.0.0.1:4242"}, "session": 1}


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_in_verification_is_a_clean_refusal(component, monkeypatch):
    token = mint()

    def explode(value):
        raise RuntimeError(f"boom while reading {value}")

    monkeypatch.setattr(component.verifier, "verify", explode)
    with pytest.raises(ApplicationError) as caught:
        await maybeDeferred(component.authenticate, "realm1", None, {**DETAILS, "ticket": token})
    assert caught.value.error == "authenticator.error.internal_error"
    assert token not in str(caught.value.args) and "boom" not in str(caught.value.args)


@pytest_twisted.ensureDeferred
async def test_a_good_ticket_returns_one_role_and_the_roles_in_extra(component):
    details = {**DETAILS, "ticket": mint("alice", ["user", "admin"])}
    answer = await maybeDeferred(component.authenticate, "realm1", None, details)
    assert answer["authid"] == "alice"
    assert answer["role"] == "admin"  # a string: a list would hang the client
    assert answer["extra"]["roles"] == ["user", "admin"]


def test_a_reusable_token_is_answered_on_the_spot_without_the_io_thread(component):
    answer = component.authenticate("realm1", None, {**DETAILS, "ticket": mint("carol")})
    assert not isinstance(answer, Deferred) and answer["authid"] == "carol"


def test_a_revocation_is_seen_by_the_in_memory_check_and_survives_reopening(component, tmp_path):
    from authenticator.server.store import SqliteStore

    token = mint("dave")
    component.store.revoke(authid="dave", jti=None, now=time.time() + 1, keep_seconds=None)
    with pytest.raises(ApplicationError) as caught:
        component.authenticate("realm1", None, {**DETAILS, "ticket": token})
    assert caught.value.error == "authenticator.error.revoked"
    reopened = SqliteStore(component.store.path)
    assert reopened.revoked(authid="dave", jti=None, issued_at=time.time(), now=time.time()) is not None
    assert reopened.revoked(authid="erin", jti=None, issued_at=time.time(), now=time.time()) is None


def test_an_anonymous_session_cannot_borrow_roles_through_its_hello_authextra(component):
    # For anonymous sessions Crossbar passes on the client's own HELLO authextra.
    session = {
        "authid": "x",
        "authrole": "anonymous",
        "authmethod": "anonymous",
        "authprovider": "static",
        "authextra": {"roles": ["admin"]},
    }
    answer = component.authorizer.authorize(session, "app.secret", "subscribe", {"match": "exact"})
    assert answer == {"allow": False, "cache": False, "disclose": False}


def test_the_roles_of_the_token_a_session_logged_in_with_widen_its_permissions(component):
    component.authenticate("realm1", None, {**DETAILS, "ticket": mint("x", ["user", "admin"]), "session": 11})
    # a user-role session that logged in with that token (Crossbar gives one role; the others are ours to know)
    logged_in = {"session": 11, "authid": "x", "authrole": "user", "authextra": {}}
    answer = component.authorizer.authorize(logged_in, "app.secret", "subscribe", {"match": "exact"})
    assert answer == {"allow": True, "cache": False, "disclose": False}
    # roles in a session's authextra count for nothing: only the token we verified does
    claiming = {"session": 12, "authid": "x", "authrole": "user", "authprovider": "dynamic",
                "authextra": {"roles": ["user", "admin"]}}  # fmt: skip
    assert component.authorizer.authorize(claiming, "app.secret", "subscribe", {"match": "exact"})["allow"] is False


@pytest_twisted.ensureDeferred
async def test_an_unreachable_store_refuses_the_login_instead_of_accepting_it_unchecked(component, monkeypatch):
    from authenticator.server.store import StoreUnavailable

    def down(**kwargs):
        raise StoreUnavailable("token store: disk I/O error")

    monkeypatch.setattr(component.store, "admit", down)
    monkeypatch.setattr(component.store, "revocations_in_memory", False)  # a store that must be asked, like Redis
    with pytest.raises(ApplicationError) as caught:
        await maybeDeferred(component.authenticate, "realm1", None, {**DETAILS, "ticket": mint()})
    assert caught.value.error == "authenticator.error.store_unavailable"


def call_details(caller: int, **kwargs):
    from autobahn.wamp.request import Registration
    from autobahn.wamp.types import CallDetails

    registration = Registration(None, 1, "authenticator.refresh", None)
    return CallDetails(registration, caller=caller, caller_authid="root", **kwargs)


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_in_refresh_or_revoke_is_internal_error_without_its_message(component, monkeypatch):
    token = mint("alice")
    component.authenticate("realm1", None, {**DETAILS, "ticket": token, "session": 7})
    component.keeper.joined({"session": 7})

    def explode(*args, **kwargs):
        raise RuntimeError(f"boom while reading {token}")

    monkeypatch.setattr(component.verifier, "verify", explode)
    monkeypatch.setattr(component.store, "revoke", explode)
    for call in (
        component.procedures.refresh(token, details=call_details(7)),
        component.procedures.revoke(authid="alice", details=call_details(8)),
    ):
        with pytest.raises(ApplicationError) as caught:
            await call
        assert caught.value.error == "authenticator.error.internal_error"
        assert token not in str(caught.value.args) and "boom" not in str(caught.value.args)


def test_one_role_spending_its_cache_budget_leaves_the_other_roles_theirs(component):
    budget = component.settings.limits.authorization_cache_entries
    visitor = {"session": 21, "authid": "v", "authrole": "anonymous", "authextra": {}}
    user = {"session": 22, "authid": "u", "authrole": "user", "authextra": {}}
    cached = [component.authorizer.authorize(visitor, f"app.public.junk{i}", "subscribe", {"match": "exact"})["cache"]
              for i in range(budget + 1)]  # fmt: skip
    assert cached == [True] * budget + [False]  # the visitors' budget is spent: allowed, uncached
    answer = component.authorizer.authorize(user, "app.chat.lobby", "subscribe", {"match": "exact"})
    assert answer["allow"] is True and answer["cache"] is True


@pytest_twisted.ensureDeferred
async def test_logins_do_not_queue_without_bound_behind_a_slow_store(component, monkeypatch):
    import threading

    from authenticator.server import admission

    monkeypatch.setattr(admission, "MAX_STORE_CHECKS_WAITING", 3)
    release = threading.Event()
    monkeypatch.setattr(component.store, "revocations_in_memory", False)
    monkeypatch.setattr(component.store.store, "admit", lambda **kwargs: release.wait(10) and None)
    waiting = [maybeDeferred(component.authenticate, "realm1", None, {**DETAILS, "ticket": mint(f"u{i}")})
               for i in range(3)]  # fmt: skip
    with pytest.raises(ApplicationError) as caught:
        await maybeDeferred(component.authenticate, "realm1", None, {**DETAILS, "ticket": mint("u3")})
    assert caught.value.error == "authenticator.error.store_unavailable"
    assert "too many logins waiting for the token store" in caught.value.args[0]
    release.set()
    for login in waiting:
        assert (await login)["role"] == "user"
    assert component.admission.store_checks_waiting == 0


@pytest.mark.parametrize("procedure", ["authenticate", "authenticate_headers"])
def test_a_login_to_another_realm_is_refused_whatever_the_token_says(component, procedure):
    """A path whose 'authenticator-realm' sends the logins of a realm without a component here (the
    node check refuses that config; this holds should one start anyway): this component's keys and
    policy are realm1's, so a login to any other realm is refused wrong_realm."""
    token = mint("alice", ["admin"])
    details = {
        **DETAILS,
        "ticket": token,
        "transport": {"peer": "tcp4:127.0.0.1:4242", "http_headers_received": {"authorization": f"Bearer {token}"}},
    }
    with pytest.raises(ApplicationError) as caught:
        getattr(component, procedure)("internal", None, details)
    assert caught.value.error == "authenticator.error.wrong_realm"
    assert (
        "the client joins realm 'internal', and this authenticator serves realm 'realm1' only" in caught.value.args[0]
    )
    assert getattr(component, procedure)("realm1", None, details)["authid"] == "alice"
