"""The Autobahn component's handlers, called directly (no router): failure paths that a real
router cannot be made to produce on demand."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig

from authenticator.component import AuthenticatorComponent
from authenticator.settings import component_extra
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
        await component.authenticate("realm1", None, {**DETAILS, "ticket": token})
    assert caught.value.error == "authenticator.error.internal_error"
    assert token not in str(caught.value.args) and "boom" not in str(caught.value.args)


@pytest_twisted.ensureDeferred
async def test_a_good_ticket_returns_one_role_and_the_roles_in_extra(component):
    answer = await component.authenticate("realm1", None, {**DETAILS, "ticket": mint("alice", ["user", "admin"])})
    assert answer["authid"] == "alice"
    assert answer["role"] == "admin"  # a string: a list would hang the client
    assert answer["extra"]["roles"] == ["user", "admin"]


def test_an_anonymous_session_cannot_borrow_roles_through_its_hello_authextra(component):
    # For anonymous sessions Crossbar passes on the client's own HELLO authextra.
    session = {
        "authid": "x",
        "authrole": "anonymous",
        "authmethod": "anonymous",
        "authprovider": "static",
        "authextra": {"roles": ["admin"]},
    }
    answer = component.authorize(session, "app.secret", "subscribe", {"match": "exact"})
    assert answer == {"allow": False, "cache": False, "disclose": False}


def test_a_dynamic_ticket_sessions_extra_roles_widen_its_permissions(component):
    session = {
        "authid": "x",
        "authrole": "user",
        "authmethod": "ticket",
        "authprovider": "dynamic",
        "authextra": {"roles": ["user", "admin"]},
    }
    answer = component.authorize(session, "app.secret", "subscribe", {"match": "exact"})
    assert answer == {"allow": True, "cache": False, "disclose": False}


@pytest_twisted.ensureDeferred
async def test_an_unreachable_store_refuses_the_login_instead_of_accepting_it_unchecked(component, monkeypatch):
    from authenticator.store import StoreUnavailable

    def down(**kwargs):
        raise StoreUnavailable("token store: disk I/O error")

    monkeypatch.setattr(component.store, "admit", down)
    with pytest.raises(ApplicationError) as caught:
        await component.authenticate("realm1", None, {**DETAILS, "ticket": mint()})
    assert caught.value.error == "authenticator.error.store_unavailable"
