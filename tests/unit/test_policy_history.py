"""The policy's `history` rule key and `presence` action: which topics keep events for recovery
(whatever the reader), and what the router watches to keep them."""

import re

import pytest

from authenticator.core.policy import History, PolicyError, load_policy, observed_topics

HISTORY = {"size": 100, "ttl_seconds": 600}


def policy(*rules, name="user"):
    return load_policy({"roles": [{"name": name, "rules": list(rules)}]}, anonymous_role=None)


def rule(uri, match="exact", history=HISTORY, **allow):
    spec = {"uri": uri, "match": match, "allow": allow or {"subscribe": True}}
    if history is not None:
        spec["history"] = history
    return spec


@pytest.mark.parametrize(
    ("uri", "match", "topic", "kept"),
    [
        ("app.user.{authid}.notifications", "exact", "app.user.bob.notifications", True),
        ("app.user.{authid}.notifications", "exact", "app.user.bob.x.notifications", False),
        ("app.user.{authid}.notifications", "exact", "app.user..notifications", False),
        ("app.user.{authid}.notifications", "exact", "app.user.bob.notifications.x", False),
        ("app.chat.", "prefix", "app.chat.lobby", True),
        ("app.chat.", "prefix", "app.chatter", False),
        ("app.user.{authid}.", "prefix", "app.user.bob.inbox.x", True),
        ("app.user.{authid}.", "prefix", "app.user.bob", False),
        ("app..room", "wildcard", "app.x.room", True),
        ("app..room", "wildcard", "app.x.y.room", False),
        ("app.news", "exact", "app.news", True),
        ("app.news", "exact", "app.newsx", False),
        ("app.a+b", "exact", "app.aab", False),  # a URI is text, never a pattern
    ],
)
def test_a_topic_keeps_history_exactly_where_a_history_rule_names_it(uri, match, topic, kept):
    found = policy(rule(uri, match)).history_for(topic)
    assert (found is not None) is kept
    if kept:
        assert found[1] == History(100, 600.0)


def test_the_first_history_rule_in_policy_order_decides_whoever_reads():
    spec = {
        "roles": [
            {"name": "a", "rules": [rule("app.chat.", "prefix", {"size": 5, "ttl_seconds": 60})]},
            {"name": "b", "rules": [rule("app.chat.lobby", "exact", {"size": 50, "ttl_seconds": 60})]},
        ]
    }
    found = load_policy(spec, anonymous_role=None).history_for("app.chat.lobby")
    assert found[1].size == 5 and found[0].role == "a"


def test_a_rule_without_history_keeps_nothing():
    assert policy(rule("app.chat.", "prefix", history=None)).history_for("app.chat.lobby") is None


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"size": 0, "ttl_seconds": 600}, "'history.size' must be a whole number from 1 to 10000"),
        ({"size": 10_001, "ttl_seconds": 600}, "'history.size' must be a whole number from 1 to 10000"),
        ({"size": 1.5, "ttl_seconds": 600}, "'history.size' must be a whole number"),
        ({"size": True, "ttl_seconds": 600}, "'history.size' must be a whole number"),
        ({"size": 10, "ttl_seconds": 0}, "'history.ttl_seconds' must be from 1 to 604800"),
        ({"size": 10, "ttl_seconds": True}, "'history.ttl_seconds' must be from 1 to 604800"),
        ({"size": 10}, "'history.ttl_seconds' must be from 1 to 604800"),
        ({"size": 10, "ttl_seconds": 60, "ttl": 5}, "unknown key 'ttl'"),
        ([100], "'history' is an object"),
    ],
)
def test_a_bad_history_is_refused_saying_what_to_write(history, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        policy(rule("app.chat.", "prefix", history))


def test_history_needs_a_rule_its_readers_may_subscribe_by():
    with pytest.raises(PolicyError, match="'history' needs a rule that allows subscribe"):
        policy(rule("app.chat.", "prefix", publish=True))


@pytest.mark.parametrize(
    ("uri", "match", "observed"),
    [
        ("app.chat.", "prefix", ("app.chat.", "prefix")),
        ("app.news", "exact", ("app.news", "exact")),
        ("app.user.{authid}.notifications", "exact", ("app.user..notifications", "wildcard")),
        ("app.{authid}..x", "wildcard", ("app...x", "wildcard")),
        ("app.user.{authid}.", "prefix", ("app.user.", "prefix")),
    ],
)
def test_the_router_watches_every_topic_of_a_history_rule(uri, match, observed):
    found = policy(rule(uri, match))
    assert observed_topics(found.history_rules()[0]) == observed


def test_presence_is_an_action_a_rule_grants_and_no_other_action_implies():
    p = policy(rule("app.chat.", "prefix", history=None, subscribe=True, presence=True),
               rule("app.user.{authid}.notifications", history=None, subscribe=True))  # fmt: skip
    ask = {"authrole": "user", "authid": "bob", "match": "exact"}
    assert p.decide(action="presence", uri="app.chat.lobby", **ask).allow
    refused = p.decide(action="presence", uri="app.user.bob.notifications", **ask)
    assert (
        not refused.allow
        and refused.reason == "no rule of role 'user' allows presence on exact 'app.user.bob.notifications'"
    )
    assert not p.decide(action="presence", uri="app.chat.lobby", **ask).cacheable


@pytest.mark.parametrize(
    ("uri", "match", "topic", "tracked"),
    [
        ("app.chat.", "prefix", "app.chat.lobby", True),
        ("app.chat.", "prefix", "app.chatroom", False),
        ("app.room.{authid}.chat", "exact", "app.room.bob.chat", True),
        ("app.room.{authid}.chat", "exact", "app.room.bob.x.chat", False),
        ("app.room..chat", "wildcard", "app.room.7.chat", True),
        ("app.room..chat", "wildcard", "app.room.7.chat.x", False),
        ("app.lobby", "exact", "app.lobby", True),
        ("app.lobby", "exact", "app.lobby2", False),
    ],
)
def test_presence_is_tracked_on_the_topics_a_presence_rule_names(uri, match, topic, tracked):
    granted = policy(rule(uri, match, history=None, subscribe=True, presence=True))
    assert granted.may_grant_presence(topic) is tracked
    without = policy(rule(uri, match, history=None, subscribe=True))
    assert without.may_grant_presence(topic) is False


@pytest.mark.parametrize("option", ["eligible", "eligible_authid", "eligible_authrole", "exclude", "exclude_authid",
                                    "exclude_authrole"])  # fmt: skip
def test_a_filtered_publication_is_refused_on_a_topic_that_keeps_history_only(option):
    from authenticator.core.policy import request_problem

    options = {option: ["x"]}
    assert request_problem("publish", "app.chat.lobby", options, 512, keeps_history=True) == (
        "eligible and exclude options cannot be used on a topic that keeps history (every subscriber reads its "
        "history); publish to a per-user topic instead"
    )
    assert request_problem("publish", "app.chat.lobby", options, 512, keeps_history=False) is None
    assert request_problem("subscribe", "app.chat.lobby", options, 512, keeps_history=True) is None
