"""core/presence: the members of a topic and the join/leave decisions, against a model."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from authenticator.core.presence import JOIN, LEAVE, Change, PresenceTable, answer

TOPICS = ("app.chat.a", "app.chat.b")
SESSIONS = range(6)
LIMIT = 2  # small, so that truncated answers are reached


def authid_of(session: int) -> str:
    return f"user{session % 3}"  # sessions 0 and 3 are the same user, and so on


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.sampled_from(TOPICS), st.sampled_from(SESSIONS)),
        st.tuples(st.just("unsubscribe"), st.sampled_from(TOPICS), st.sampled_from(SESSIONS)),
        st.tuples(st.just("left"), st.just(None), st.sampled_from(SESSIONS)),
    ),
    max_size=60,
)
SEEN: Counter = Counter()


def run_model(operations, seen: Counter) -> None:
    table = PresenceTable()
    members: set[tuple[str, int]] = set()  # the truth: (topic, session)
    published: list[Change] = []

    def present(topic, authid):
        return any(t == topic and authid_of(s) == authid for t, s in members)

    for kind, topic, session in operations:
        topics = [topic] if topic is not None else [t for t in TOPICS if (t, session) in members]
        before = {(t, authid_of(session)): present(t, authid_of(session)) for t in TOPICS}
        if kind == "subscribe":
            changes = [table.subscribed(topic, session, authid_of(session))]
            members.add((topic, session))
        elif kind == "unsubscribe":
            changes = [table.unsubscribed(topic, session)]
            members.discard((topic, session))
        else:
            changes = table.left(session)
            members -= {(t, session) for t in TOPICS}
        changes = [c for c in changes if c is not None]
        published.extend(changes)
        expected = []
        for t in topics:
            was, now = before[(t, authid_of(session))], present(t, authid_of(session))
            if not was and now:
                expected.append(Change(JOIN, t, authid_of(session)))
            elif was and not now:
                expected.append(Change(LEAVE, t, authid_of(session)))
            elif kind == "subscribe" and now:
                seen["subscribe without a join (another session of the authid)"] += 1
        assert sorted(changes, key=repr) == sorted(expected, key=repr), (kind, topic, session)
        for change in changes:
            seen[f"{change.event} after {kind}"] += 1
        for t in TOPICS:
            truth = [(s, authid_of(s)) for tt, s in members if tt == t]
            got = table.answer(t, limit=LIMIT)
            assert got == answer(truth, limit=LIMIT)
            assert got["sessions"] == len(truth)
            assert got["authids"] == sorted({a for _, a in truth})[:LIMIT]
            assert sorted(table.members(t)) == sorted(truth)
            seen["truncated answer"] += got["truncated"]
        assert len(table) == len(members)
        assert sorted(table.entries()) == sorted((t, s, authid_of(s)) for t, s in members)
    # Per (topic, authid) the events alternate, starting with a join; the last says whether present.
    for t in TOPICS:
        for authid in {authid_of(s) for s in SESSIONS}:
            events = [c.event for c in published if c.topic == t and c.authid == authid]
            assert events == [JOIN, LEAVE] * (len(events) // 2) + [JOIN] * (len(events) % 2)
            assert (len(events) % 2 == 1) == present(t, authid)


@settings(max_examples=400, derandomize=True, database=None, deadline=None)  # the same examples everywhere
@given(OPERATIONS)
def _check_against_the_model(operations):
    run_model(operations, SEEN)


def test_joins_and_leaves_are_the_first_and_last_session_of_an_authid_and_the_answer_is_the_truth():
    SEEN.clear()
    _check_against_the_model()
    for kind in ("join after subscribe", "leave after unsubscribe", "leave after left",
                 "subscribe without a join (another session of the authid)"):  # fmt: skip
        assert SEEN[kind] >= 50, SEEN
    assert SEEN["truncated answer"] >= 20, SEEN


def test_two_sessions_of_one_authid_make_one_join_and_one_leave():
    table = PresenceTable()
    assert table.subscribed("app.chat.a", 1, "alice") == Change(JOIN, "app.chat.a", "alice")
    assert table.subscribed("app.chat.a", 2, "alice") is None
    assert table.subscribed("app.chat.a", 2, "alice") is None  # said twice: still one member
    assert table.answer("app.chat.a") == {"authids": ["alice"], "users": 1, "sessions": 2, "truncated": False}
    assert table.left(1) == []
    assert table.unsubscribed("app.chat.a", 2) == Change(LEAVE, "app.chat.a", "alice")
    assert table.answer("app.chat.a") == {"authids": [], "users": 0, "sessions": 0, "truncated": False}
    assert len(table) == 0 and table.entries() == []


def test_a_large_answer_is_cut_to_the_first_authids_and_says_so():
    members = [(i, f"u{i:05d}") for i in range(2500)]
    got = answer(members, limit=1000)
    assert got["authids"] == [f"u{i:05d}" for i in range(1000)]
    assert got["users"] == 2500 and got["sessions"] == 2500 and got["truncated"] is True


def test_the_presence_ttl_is_a_setting_with_bounds(monkeypatch):
    import pytest

    from authenticator.config.node_config import component_extra
    from authenticator.config.settings import ConfigError, load_settings
    from tests.support.router import REPO
    from tests.support.tokens import TEST_SECRET

    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    extra = component_extra(REPO / ".crossbar" / "config.json")
    assert load_settings(extra, REPO / ".crossbar", generate_secret=None).presence.ttl_seconds == 60
    chosen = load_settings({**extra, "presence": {"ttl_seconds": 5}}, REPO / ".crossbar", generate_secret=None)
    assert chosen.presence.ttl_seconds == 5
    for bad, named in (({"ttl_seconds": 2}, "from 3 to 3600"), ({"ttl": 5}, "unknown key 'ttl'"),
                       ([], "'presence' must be an object")):  # fmt: skip
        with pytest.raises(ConfigError, match=named):
            load_settings({**extra, "presence": bad}, REPO / ".crossbar", generate_secret=None)


def test_a_node_config_whose_component_role_cannot_track_presence_is_named_with_the_fix():
    import copy
    import json

    from authenticator.config.node_checks import check_node
    from tests.support.router import REPO

    shipped = json.loads((REPO / ".crossbar" / "config.json").read_text())
    policy_roles = ["anonymous", "user", "admin", "backend"]
    assert check_node(shipped, policy_roles) == []
    for dropped, named in (("wamp.subscription.on_", "may not subscribe wamp.subscription.on_create"),
                           ("authenticator.presence.", "may not publish authenticator.presence.app.chat")):  # fmt: skip
        config = copy.deepcopy(shipped)
        role = config["workers"][0]["realms"][0]["roles"][0]
        assert role["name"] == "authenticator"
        role["permissions"] = [p for p in role["permissions"] if p["uri"] != dropped]
        problems = check_node(config, policy_roles)
        assert [p.path for p in problems] == ["workers[0].realms[0].roles[0].permissions"], problems
        assert f"role 'authenticator' {named}" in problems[0].message
        assert f'"uri": "{dropped}", "match": "prefix"' in problems[0].message


def test_only_an_exact_subscription_reaches_presence_events_and_no_client_publishes_there():
    from authenticator.core.presence import events_problem, events_topic

    assert events_topic("authenticator.presence.app.chat.lobby") == "app.chat.lobby"
    assert events_topic("app.chat.lobby") is None
    assert events_problem("subscribe", "authenticator.presence.app.chat.lobby", "exact") is None
    assert "one topic" in events_problem("subscribe", "authenticator.presence.", "exact")
    for uri, match in (("a", "prefix"), ("authenticator.", "prefix"), ("authenticator.presence.app.", "prefix"),
                       ("authenticator..app.chat", "wildcard"), (".presence.app", "wildcard"),
                       ("authenticator.presence..lobby", "wildcard")):  # fmt: skip
        assert "one topic at a time" in events_problem("subscribe", uri, match), (uri, match)
    for uri, match in (("app.", "prefix"), ("authenticator.refresh", "prefix"), ("authenticator.presence", "wildcard"),
                       ("app..lobby", "wildcard"), ("authenticator.history.", "prefix")):  # fmt: skip
        assert events_problem("subscribe", uri, match) is None, (uri, match)
    assert events_problem("publish", "authenticator.presence.app.chat.lobby", "exact").startswith("only the router")
    assert events_problem("publish", "app.chat.lobby", "exact") is None


def test_a_redis_password_in_the_url_is_never_in_a_presence_log_line():
    """Presence names the Redis it could not reach; a password in the URL's query string (the form a
    unix:// URL takes) or userinfo is not part of that name."""
    from types import SimpleNamespace

    from twisted.python.failure import Failure

    from authenticator.server.presence import Presence

    lines = []

    class Log:
        def warn(self, text, **fields):
            lines.append(text.format(**fields))

    for url in ("unix:///nonexistent/redis.sock?db=0&password=s3cret", "redis://u:s3cret@127.0.0.1:1/0"):
        settings = SimpleNamespace(
            policy=None, limits=SimpleNamespace(max_uri_length=512), presence=SimpleNamespace(ttl_seconds=30),
            store=SimpleNamespace(redis_url=url, timeout_seconds=0.3),
            claims=SimpleNamespace(realm="realm1", node_realms=("realm1",)),
        )  # fmt: skip
        presence = Presence(settings, None, None, None, None, Log())
        presence._send_failed(Failure(ConnectionError("refused")), 3)
    assert len(lines) == 2
    assert all("s3cret" not in line and "password" not in line for line in lines), lines
    assert "Redis at unix:///nonexistent/redis.sock:" in lines[0] and "Redis at redis://127.0.0.1:1/0:" in lines[1]
