"""Where the authorizer finds a session's grants: the keeper's table, by WAMP session id (behind
proxies by the login key until the router announces the session), never the session's authextra;
gone with the session. And the authorizer hands them to every decision it makes: Crossbar's
requests, presence feeds (authenticator.presence.<topic>), never cacheable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from authenticator.config.node_config import component_extra
from authenticator.config.settings import load_settings
from authenticator.core.grants import read_grants
from authenticator.core.policy import load_policy
from authenticator.core.tokens import Identity
from authenticator.server.authorizer import Authorizer
from authenticator.server.session_keeper import LOGIN_KEY
from tests.component.test_keeper import NOW, Harness, _Log
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET

POLICY = load_policy({"roles": [
    {"name": "anonymous", "rules": []},
    {"name": "user", "inherit": ["anonymous"], "rules": [
        {"uri": "app.board.", "match": "prefix", "grantable": ["subscribe", "publish", "presence"]},
    ]},
]})  # fmt: skip


def granted(*uris: str, authid: str = "alice"):
    caps = [{"uri": uri, "match": "exact", "allow": ["subscribe", "publish", "presence"]} for uri in uris]
    return read_grants(caps, claim="caps", policy=POLICY, roles=("user",), authid=authid, max_uri_length=512)


def login(h: Harness, session_id, grants, authid="alice") -> dict:
    identity = Identity(authid, "user", ("user",), expires_at=NOW + 60, issued_at=NOW, jti=None, claims={},
                        grants=grants)  # fmt: skip
    return h.keeper.admitted(identity, session_id)


@pytest.mark.parametrize("behind_proxies", [False, True])
def test_a_sessions_grants_come_from_the_table_and_end_with_the_session(behind_proxies):
    h = Harness(behind_proxies=behind_proxies)
    mine = granted("app.board.1")
    extra = login(h, 41, mine)
    # before the join: by the pending session id, or behind proxies by the login key it carries
    assert h.keeper.grants({"session": 41, "authextra": extra}) == mine
    sid = 41 if not behind_proxies else 5001
    h.keeper.joined({"session": sid, "authextra": extra})
    assert h.keeper.grants({"session": sid, "authextra": {}}) == mine
    # claiming grants (or another's login key) in authextra gives nothing
    assert h.keeper.grants({"session": 99, "authextra": {"caps": [{"uri": "app.board.1"}]}}) == ()
    assert h.keeper.grants({"session": 99, "authextra": {LOGIN_KEY: "login-guessed"}}) == ()
    h.keeper.left(sid)
    assert h.keeper.grants({"session": sid, "authextra": extra}) == ()


def test_a_login_revoked_while_joining_has_no_grants():
    h = Harness()
    login(h, 45, granted("app.board.1"))
    h.keeper.revoke("alice", None)
    assert h.keeper.grants({"session": 45}) == ()


class _Table:
    """The authorizer's view of the keeper: a session's token roles and grants by session id."""

    def __init__(self) -> None:
        self.grants = {7: granted("app.board.1"), 8: ()}

    def roles(self, session):
        return {"user"}

    def of(self, session):
        return self.grants.get(session.get("session"), ())


@pytest.fixture
def authorizer(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    shipped = load_settings(component_extra(REPO / ".crossbar" / "config.json"), REPO / ".crossbar",
                            generate_secret=None)  # fmt: skip
    table = _Table()
    return Authorizer(replace(shipped, policy=POLICY), table.roles, _Log(), (), grants=table.of)


@pytest.mark.parametrize(
    ("uri", "action", "options"),
    [
        ("app.board.1", "subscribe", {}),
        ("app.board.1", "publish", {"acknowledge": True}),
        ("authenticator.presence.app.board.1", "subscribe", {}),  # presence on app.board.1
    ],
)
def test_the_authorizer_decides_with_the_callers_grants_only_and_never_lets_crossbar_cache(authorizer, uri, action,
                                                                                            options):  # fmt: skip
    alice = {"session": 7, "authid": "alice", "authrole": "user"}
    bob = {"session": 8, "authid": "bob", "authrole": "user"}
    assert authorizer.authorize(alice, uri, action, options) == {"allow": True, "cache": False, "disclose": False}
    assert authorizer.authorize(bob, uri, action, options)["allow"] is False
    assert authorizer.authorize(alice, "app.board.2", action, options)["allow"] is False
