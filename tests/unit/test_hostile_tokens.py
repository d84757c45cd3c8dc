"""The pure verifier against the hostile corpus and against Hypothesis: whatever it is handed,
it answers with an Identity or a Rejected — never another exception, never a forged identity."""

import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authenticator.reasons import Rejected
from authenticator.settings import component_extra, load_settings
from authenticator.tokens import TokenVerifier
from tests.support.hostile import HS, claims, corpus, signed
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET


@pytest.fixture(scope="module")
def verifier(tmp_path_factory):
    os.environ.setdefault("JWT_SECRET", TEST_SECRET)
    extra = {**component_extra(REPO / ".crossbar" / "config.json"), "store": {}}
    return TokenVerifier(load_settings(extra, tmp_path_factory.mktemp("cbdir"), generate_secret=False))


def outcome(verifier, ticket) -> str:
    try:
        verifier.verify(ticket)
    except Rejected as rejection:
        return rejection.reason.code
    return "ACCEPTED"


def test_the_corpus_has_at_least_300_distinct_hostile_tokens():
    tickets = [h.ticket for h in corpus()]
    assert len(set(tickets)) == len(tickets) >= 300


def test_every_hostile_token_is_refused_with_its_reason(verifier):
    wrong = {h.label: (h.reason, outcome(verifier, h.ticket)) for h in corpus()}
    wrong = {label: pair for label, pair in wrong.items() if pair[0] != pair[1]}
    assert wrong == {}, "label: (expected, got)"


GOOD = signed(HS, claims())
BASE64URL = string.ascii_letters + string.digits + "-_"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=300), st.text(alphabet=BASE64URL + ".", max_size=300), st.binary(max_size=100)))
def test_arbitrary_input_is_refused_never_raised(verifier, ticket):
    assert outcome(verifier, ticket) != "ACCEPTED"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0, max_value=len(GOOD) - 1), replacement=st.text(min_size=0, max_size=3))
def test_no_edit_of_a_valid_token_is_accepted(verifier, position, replacement):
    edited = GOOD[:position] + replacement + GOOD[position + 1 :]
    if edited != GOOD:
        assert outcome(verifier, edited) != "ACCEPTED"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(st.sampled_from(["sub", "roles", "role", "exp", "nbf", "iat", "aud", "jti", "x"]),
                                 JSON_VALUES, max_size=5))  # fmt: skip
def test_validly_signed_claims_of_any_shape_give_an_identity_that_matches_them_or_a_reason(verifier, overrides):
    token_claims = claims(**overrides)
    try:
        identity = verifier.verify(signed(HS, json.dumps(token_claims)))
    except Rejected:
        return
    assert identity.authid == token_claims["sub"]
    assert set(identity.roles) <= {"anonymous", "user", "admin"}
    assert isinstance(token_claims["exp"], int | float)
