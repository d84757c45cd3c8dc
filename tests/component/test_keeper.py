"""The live-session keeper on a fake clock: expiry at exp + grace, revocations of joined sessions
and of logins still joining, logins that never join, and the roles a session's token holds."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from authenticator.core.reasons import Reason
from authenticator.core.tokens import Identity
from authenticator.server.session_keeper import LOGIN_KEY, SessionKeeper

NOW = 1_000_000.0
GRACE, JOIN_TIMEOUT = 5.0, 30.0


class Harness:
    def __init__(self, behind_proxies: bool = False) -> None:
        self.clock = Clock()
        self.kills: list[tuple[int, Reason]] = []
        self.keeper = SessionKeeper(
            grace_seconds=GRACE, join_timeout_seconds=JOIN_TIMEOUT, behind_proxies=behind_proxies,
            kill=lambda sid, reason, message: self.kills.append((sid, reason)), log=_Log(),
            clock=self.clock, wall_clock=lambda: NOW + self.clock.seconds(),
        )  # fmt: skip
        self.keeper.start()

    def login(self, session_id: int | None, authid="alice", roles=("user",), ttl=60.0, jti="j1") -> dict:
        identity = Identity(authid, roles[0], tuple(roles), expires_at=NOW + ttl, issued_at=NOW, jti=jti, claims={})
        return self.keeper.admitted(identity, session_id)


class _Log:
    def info(self, *args, **kwargs) -> None: ...

    def warn(self, *args, **kwargs) -> None: ...


def test_a_joined_session_is_ended_at_exp_plus_grace_and_not_before():
    h = Harness()
    h.login(7, ttl=60)
    h.keeper.joined({"session": 7})
    h.clock.advance(60 + GRACE - 0.1)
    assert h.kills == []
    h.clock.advance(0.2)
    assert h.kills == [(7, Reason.EXPIRED)] and h.keeper.session(7) is None


def test_a_refresh_moves_the_deadline():
    h = Harness()
    h.login(7, ttl=60)
    h.keeper.joined({"session": 7})
    live = h.keeper.session(7)
    later = Identity("alice", "user", ("user",), expires_at=NOW + 120, issued_at=NOW + 50, jti="j2", claims={})
    h.clock.advance(50)
    h.keeper.refreshed(live, later)
    h.clock.advance(60)  # past the first token's exp + grace
    assert h.kills == [] and live.jti == "j2"
    h.clock.advance(20)
    assert h.kills == [(7, Reason.EXPIRED)]


def test_a_login_that_never_joins_is_dropped_after_the_join_timeout_without_a_kill():
    h = Harness()
    h.login(7, ttl=3600)
    h.clock.advance(JOIN_TIMEOUT)  # admitted at 0: not yet older than the timeout at the first sweep
    assert h.keeper.table.find(7) is not None
    h.clock.advance(JOIN_TIMEOUT)
    assert h.keeper.table.find(7) is None and h.kills == []


def test_a_revocation_ends_joined_sessions_and_ends_a_joining_one_when_it_joins():
    h = Harness()
    h.login(7, jti="a")
    h.keeper.joined({"session": 7})
    h.login(8, jti="b")  # still joining
    assert [live.session_id for live in h.keeper.revoke("alice", None)] == [7]
    assert h.kills == [(7, Reason.REVOKED)]
    h.keeper.joined({"session": 8})
    assert h.kills == [(7, Reason.REVOKED), (8, Reason.REVOKED)] and h.keeper.session(8) is None


def test_a_session_that_left_is_forgotten_and_its_timer_cancelled():
    h = Harness()
    h.login(7, ttl=10)
    h.keeper.joined({"session": 7})
    h.keeper.left(7)
    h.clock.advance(100)
    assert h.kills == [] and h.keeper.revoke("alice", None) == []


@pytest.mark.parametrize("behind_proxies", [False, True])
def test_the_token_roles_of_a_session_come_from_the_table_never_from_its_authextra(behind_proxies):
    h = Harness(behind_proxies)
    extra = h.login(7, roles=("user", "admin"))
    key = extra.get(LOGIN_KEY)
    assert (key is not None) is behind_proxies
    # before the join event reached us (behind proxies: found by its unguessable login key)
    assert h.keeper.token_roles({"session": 41, "authextra": extra}) == ({"user", "admin"} if behind_proxies else set())
    h.keeper.joined({"session": 41 if behind_proxies else 7, "authextra": extra})
    sid = 41 if behind_proxies else 7
    assert h.keeper.token_roles({"session": sid, "authextra": {}}) == {"user", "admin"}
    assert h.keeper.token_roles({"session": 99, "authextra": {"roles": ["admin"]}}) == set()
    if behind_proxies:
        assert h.keeper.token_roles({"session": 99, "authextra": {LOGIN_KEY: "login-guessed"}}) == set()


def test_a_token_admitted_within_the_leeway_after_exp_gets_the_grace_from_now():
    h = Harness()
    h.login(7, ttl=-8)  # accepted with a 10 s leeway, 8 s past exp
    h.keeper.joined({"session": 7})
    h.clock.advance(GRACE - 0.1)
    assert h.kills == []  # not ended in the same breath: time to refresh
    h.clock.advance(0.2)
    assert h.kills == [(7, Reason.EXPIRED)]


def test_behind_proxies_a_login_whose_deadline_passes_before_it_joins_is_ended_when_it_joins():
    h = Harness(behind_proxies=True)
    extra = h.login(None, ttl=1)
    h.clock.advance(1 + GRACE + 1)  # the deadline passes while the router has not announced it
    assert h.kills == []  # nothing to end yet: no router session id
    h.keeper.joined({"session": 42, "authextra": extra})
    assert h.kills == [(42, Reason.EXPIRED)] and h.keeper.session(42) is None


def test_behind_proxies_a_join_of_a_login_no_longer_held_is_ended():
    h = Harness(behind_proxies=True)
    h.keeper.joined({"session": 43, "authextra": {LOGIN_KEY: "login-0123456789abcdef"}})
    assert h.kills == [(43, Reason.EXPIRED)]


def test_behind_proxies_a_login_revoked_while_joining_is_ended_when_it_joins():
    h = Harness(behind_proxies=True)
    extra = h.login(None, authid="bob")
    assert h.keeper.revoke("bob", None) == []  # not joined: not counted as ended
    h.keeper.joined({"session": 44, "authextra": extra})
    assert h.kills == [(44, Reason.REVOKED)]


@pytest.mark.parametrize("mark", ["revoked", "expired"])
def test_a_pending_login_to_be_ended_grants_no_token_roles(mark):
    h = Harness(behind_proxies=True)
    extra = h.login(None, roles=("user", "admin"))
    live = h.keeper.table.find(extra[LOGIN_KEY])
    assert h.keeper.token_roles({"session": 45, "authextra": extra}) == {"user", "admin"}
    setattr(live, mark, True)
    assert h.keeper.token_roles({"session": 45, "authextra": extra}) == set()


def test_the_welcome_says_how_long_the_token_has_left_on_the_routers_clock():
    h = Harness()
    h.clock.advance(12)  # the router's clock, 12 s after the token was issued
    extra = h.login(7, ttl=60)
    assert extra["exp"] == NOW + 60 and extra["expires_in"] == 48
