"""The live-session table: pending logins, joins (with the proxies' login keys), revocations that
arrive before a session joins, and logins that never join."""

from authenticator.core.live_sessions import LiveSessions
from authenticator.core.tokens import Identity


def identity(authid="alice", jti="j1") -> Identity:
    return Identity(authid, "user", ("user",), expires_at=2_000_000_000, issued_at=1, jti=jti, claims={})


def test_a_login_is_pending_until_the_router_announces_its_session():
    live = LiveSessions()
    entry = live.add(42, identity(), grace=5, now=100.0)
    assert live.get(42) is None  # a pending login cannot refresh
    assert live.join(42, 42) is entry and live.get(42) is entry and entry.joined
    assert live.join(42, 42) is None  # announced once


def test_behind_proxies_a_login_key_moves_to_the_routers_session_id():
    live = LiveSessions()
    entry = live.add("login-abc", identity(), grace=5)
    assert live.join("login-abc", 42) is entry and entry.session_id == 42
    assert live.get(42) is entry and live.join("login-abc", 43) is None and live.pop("login-abc") is None


def test_logins_that_never_join_are_dropped_after_the_join_timeout_and_joined_ones_stay():
    live = LiveSessions()
    abandoned = live.add(1, identity(jti="a"), grace=5, now=100.0)
    joined = live.add(2, identity(jti="b"), grace=5, now=100.0)
    recent = live.add(3, identity(jti="c"), grace=5, now=129.0)
    live.join(2, 2)
    assert live.drop_unjoined(admitted_before=130.0 - 20) == [abandoned]
    assert live.covered_by(authid="alice", jti=None) == [joined, recent]


def test_a_revocation_covers_pending_logins_and_joined_sessions_by_authid_or_jti():
    live = LiveSessions()
    mine = live.add(1, identity("alice", "j1"), grace=5)
    other = live.add(2, identity("bob", "j2"), grace=5)
    live.join(2, 2)
    assert live.covered_by(authid="alice", jti=None) == [mine]
    assert live.covered_by(authid=None, jti="j2") == [other]
    assert live.covered_by(authid=None, jti=None) == []
