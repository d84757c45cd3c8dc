"""The pure rules of refresh and revoke (authenticator/core/session_rules.py)."""

import pytest

from authenticator.core.reasons import Reason
from authenticator.core.session_rules import (
    MAX_ID,
    refresh_refusal,
    revocation_keep_seconds,
    revocation_problem,
    tokens_issued_until,
)
from authenticator.core.settings import ClaimRules
from authenticator.core.tokens import Identity


def identity(authid="alice", roles=("user",)):
    return Identity(authid=authid, role=roles[0], roles=tuple(roles), expires_at=2_000_000_000, issued_at=None,
                    jti="j1", claims={})  # fmt: skip


def test_a_refresh_extends_only_the_same_user_with_the_same_roles():
    assert refresh_refusal("alice", frozenset({"user"}), identity()) is None
    other_user = refresh_refusal("alice", frozenset({"user"}), identity(authid="bob"))
    assert other_user.reason is Reason.REFRESH_REFUSED and other_user.detail == "it is for another user"
    demoted = refresh_refusal("alice", frozenset({"user", "admin"}), identity())
    assert demoted.reason is Reason.REFRESH_REFUSED and "roles differ" in demoted.detail
    promoted = refresh_refusal("alice", frozenset({"user"}), identity(roles=("user", "admin")))
    assert promoted is not None and promoted.authid == "alice" and promoted.jti == "j1"


@pytest.mark.parametrize(
    ("authid", "jti", "refused"),
    [
        (None, None, True),
        ("", None, True),
        ("a" * (MAX_ID + 1), None, True),
        (None, 7, True),
        ("alice", None, False),
        (None, "j1", False),
        ("a" * MAX_ID, "j1", False),
    ],
)
def test_a_revocation_names_a_bounded_authid_or_jti(authid, jti, refused):
    problem = revocation_problem(authid, jti)
    assert (problem is not None) is refused
    if refused:
        assert "authid='...' or jti='...'" in problem and str(MAX_ID) in problem


def test_a_revocation_is_kept_as_long_as_the_latest_token_it_covers_is_accepted():
    assert revocation_keep_seconds(ClaimRules(max_lifetime_seconds=None)) is None
    assert revocation_keep_seconds(ClaimRules(max_lifetime_seconds=3600, leeway_seconds=10)) == 3620
    assert tokens_issued_until(1000.0, ClaimRules(leeway_seconds=10)) == 1010.0
