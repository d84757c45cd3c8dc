"""Remembered verified tokens (tokens.TOKEN_CACHE_SIZE): a remembered token is accepted only as
long as a full verification would accept it."""

from dataclasses import replace

import pytest

from authenticator.core.reasons import Reason, Rejected
from authenticator.core.tokens import TOKEN_CACHE_SIZE, TokenVerifier
from tests.support.tokens import mint
from tests.unit.conftest import NOW, settings_with_secret


@pytest.fixture
def clock():
    return {"now": NOW}


@pytest.fixture
def verifier(shipped_extra, tmp_path, clock):
    return TokenVerifier(settings_with_secret(shipped_extra, tmp_path), clock=lambda: clock["now"])


def signatures_checked(verifier, monkeypatch) -> list:
    checked = []
    original = verifier._check_signature

    def counting(*args):
        checked.append(args[0])
        return original(*args)

    monkeypatch.setattr(verifier, "_check_signature", counting)
    return checked


def test_the_same_token_is_verified_once_and_gives_the_same_identity(verifier, monkeypatch):
    checked = signatures_checked(verifier, monkeypatch)
    token = mint("billing", ["backend"], now=NOW)
    first, second = verifier.verify(token), verifier.verify(token)
    assert first == second and first.authid == "billing" and len(checked) == 1
    with pytest.raises(TypeError):
        first.claims["sub"] = "root"  # shared by every use: read-only


def test_a_remembered_token_still_expires(verifier, clock, monkeypatch):
    checked = signatures_checked(verifier, monkeypatch)
    token = mint("billing", ["backend"], ttl=60, now=NOW)
    verifier.verify(token)
    clock["now"] = NOW + 60 + 9
    verifier.verify(token)  # within the leeway: from memory
    assert len(checked) == 1
    clock["now"] = NOW + 60 + 10  # exp + leeway
    with pytest.raises(Rejected) as refused:
        verifier.verify(token)
    assert refused.value.reason is Reason.EXPIRED and len(checked) == 1  # refused from memory, too


def test_a_remembered_token_is_forgotten_when_its_key_is_replaced(verifier, monkeypatch):
    checked = signatures_checked(verifier, monkeypatch)
    token = mint("billing", ["backend"], now=NOW)
    verifier.verify(token)
    verifier.verify(token)
    assert len(checked) == 1  # remembered, until the key changes
    ring = verifier.settings.keys
    # the same kid (none: the default key) now selects another key object, with another secret
    rotated = replace(ring.select(None, "HS256"), material=b"another-secret-another-secret-0123456789")
    monkeypatch.setattr(ring, "select", lambda kid, alg: rotated)
    with pytest.raises(Rejected) as refused:
        verifier.verify(token)
    assert refused.value.reason is Reason.INVALID_SIGNATURE and len(checked) == 2


def test_a_remembered_token_is_forgotten_when_its_key_is_removed(verifier, monkeypatch):
    token = mint("billing", ["backend"], now=NOW)
    verifier.verify(token)

    def gone(kid, alg):
        raise Rejected(Reason.UNKNOWN_KEY, "no key is configured for the token's kid")

    monkeypatch.setattr(verifier.settings.keys, "select", gone)
    with pytest.raises(Rejected) as refused:
        verifier.verify(token)
    assert refused.value.reason is Reason.UNKNOWN_KEY


def test_single_use_tokens_are_never_remembered(shipped_extra, tmp_path, monkeypatch):
    verifier = TokenVerifier(settings_with_secret({**shipped_extra, "single_use": True}, tmp_path), clock=lambda: NOW)
    checked = signatures_checked(verifier, monkeypatch)
    token = mint("billing", ["backend"], now=NOW, jti="j1")
    verifier.verify(token)
    verifier.verify(token)  # the store refuses the replay; verification itself runs again
    assert len(checked) == 2


def test_refused_tokens_are_not_remembered_and_the_memory_is_bounded(verifier, monkeypatch):
    forged = mint("root", ["admin"], now=NOW, secret="not-the-secret-not-the-secret-0123456789")
    for _ in range(2):
        with pytest.raises(Rejected):
            verifier.verify(forged)
    for n in range(TOKEN_CACHE_SIZE + 10):
        verifier.verify(mint(f"user{n}", ["user"], now=NOW))
    assert len(verifier._verified_tokens) == TOKEN_CACHE_SIZE
    assert forged not in verifier._verified_tokens
