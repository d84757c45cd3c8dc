"""POST /publish without a fixed realm: which realm's service a request goes to, on a node with
several realms (the router test, tests/router/test_realms.py, covers the joined case end to end)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from authenticator.core.reasons import Reason, Rejected
from authenticator.endpoints import publish
from authenticator.endpoints.bearer_json import Answer
from tests.support.tokens import mint

A, B = "tenant-a", "tenant-b"


def service(realm: str):
    return SimpleNamespace(realm=realm, _settings=SimpleNamespace(
        claims=SimpleNamespace(realm_claim="aud"), max_token_bytes=8192))  # fmt: skip


@pytest.fixture
def realms(monkeypatch):
    """Two realms of the worker; only A's component has joined."""
    monkeypatch.setattr(publish, "REALMS", {A: ("aud", 8192), B: ("aud", 8192)})
    monkeypatch.setattr(publish, "SERVICES", {A: service(A)})


def test_a_token_of_the_realm_whose_component_has_not_joined_is_503_retry_not_another_realms(realms):
    chosen = publish.RealmOfTheToken.of(mint("app", ["backend"], aud=B))
    assert isinstance(chosen, Answer) and (chosen.status, chosen.headers) == (503, {"Retry-After": "1"})
    assert publish.RealmOfTheToken.of(mint("app", ["backend"], aud=A)).realm == A


def test_without_a_token_or_a_realm_the_request_is_refused_naming_no_realm(realms):
    missing = publish.RealmOfTheToken.of(None)
    assert isinstance(missing, Rejected) and missing.reason is Reason.MISSING_TOKEN
    for token in (mint("app", ["backend"]), mint("app", ["backend"], aud="tenant-c")):
        refused = publish.RealmOfTheToken.of(token)
        assert isinstance(refused, Rejected) and refused.reason is Reason.WRONG_REALM
        assert A not in refused.detail and B not in refused.detail
    both = publish.RealmOfTheToken.of(mint("app", ["backend"], aud=[A, B]))
    assert both.reason is Reason.WRONG_REALM and "several realms" in both.detail
