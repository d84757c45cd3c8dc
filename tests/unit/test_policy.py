"""The pure policy: a table of (role, authid, action, match, URI) -> (allow, cacheable)."""

import pytest

from authenticator.core.policy import PolicyError, covers, load_policy, request_problem

ALLOW, DENY = True, False
CACHED, UNCACHED = True, False

MATRIX = [
    # role, authid, action, match, uri, allow, cacheable
    ("anonymous", None, "subscribe", "exact", "app.public.news", ALLOW, CACHED),
    ("anonymous", None, "subscribe", "prefix", "app.public.", ALLOW, CACHED),
    ("anonymous", None, "publish", "exact", "app.public.news", DENY, UNCACHED),
    ("anonymous", None, "subscribe", "exact", "app.chat.lobby", DENY, UNCACHED),
    ("anonymous", None, "call", "exact", "authenticator.refresh", DENY, UNCACHED),
    ("user", "alice", "subscribe", "exact", "app.public.news", ALLOW, CACHED),  # inherited
    ("user", "alice", "subscribe", "exact", "app.chat.lobby", ALLOW, CACHED),
    ("user", "alice", "publish", "exact", "app.chat.lobby", ALLOW, UNCACHED),  # publish: never cached
    ("user", "alice", "subscribe", "wildcard", "app.chat..typing", ALLOW, CACHED),
    ("user", "alice", "subscribe", "exact", "app.user.alice.notifications", ALLOW, UNCACHED),
    ("user", "bob", "subscribe", "exact", "app.user.alice.notifications", DENY, UNCACHED),
    ("user", "alice", "publish", "exact", "app.user.alice.notifications", DENY, UNCACHED),
    ("user", "alice", "subscribe", "prefix", "app.user.", DENY, UNCACHED),
    ("user", "alice", "subscribe", "prefix", "app.user.al", DENY, UNCACHED),
    ("user", "alice", "subscribe", "prefix", "app.user.alice.", DENY, UNCACHED),
    ("user", "alice", "subscribe", "wildcard", "app.user..notifications", DENY, UNCACHED),
    ("user", "alice", "subscribe", "wildcard", "app.user.alice.", DENY, UNCACHED),
    ("user", "alice", "subscribe", "prefix", "app.", DENY, UNCACHED),
    ("user", "alice", "call", "exact", "authenticator.refresh", ALLOW, UNCACHED),  # call: never cached
    ("user", "alice", "call", "exact", "authenticator.revoke", DENY, UNCACHED),
    ("user", "alice", "register", "exact", "app.chat.lobby", DENY, UNCACHED),
    ("admin", "root", "subscribe", "prefix", "app.", ALLOW, CACHED),
    ("admin", "root", "subscribe", "exact", "app.user.alice.notifications", ALLOW, CACHED),
    ("admin", "root", "publish", "exact", "app.user.alice.notifications", ALLOW, UNCACHED),
    ("admin", "root", "publish", "exact", "app.public.news", ALLOW, UNCACHED),
    ("admin", "root", "call", "exact", "authenticator.revoke", ALLOW, UNCACHED),
    ("admin", "root", "call", "exact", "wamp.session.kill", DENY, UNCACHED),
    ("admin", "root", "subscribe", "prefix", "", DENY, UNCACHED),
    ("nobody", "alice", "subscribe", "exact", "app.public.news", DENY, UNCACHED),
]


@pytest.mark.parametrize(("role", "authid", "action", "match", "uri", "allow", "cacheable"), MATRIX)
def test_policy_matrix(settings, role, authid, action, match, uri, allow, cacheable):
    decision = settings.policy.decide(authrole=role, authid=authid, action=action, uri=uri, match=match)
    assert (decision.allow, decision.cacheable) == (allow, cacheable), decision.reason


def test_chat_publications_disclose_the_publisher(settings):
    decision = settings.policy.decide(authrole="user", authid="alice", action="publish", uri="app.chat.lobby")
    assert decision.disclose and decision.as_crossbar_answer() == {"allow": True, "cache": False, "disclose": True}


def test_every_answer_carries_disclose_for_crossbar(settings):
    decision = settings.policy.decide(authrole="user", authid="bob", action="publish", uri="nope")
    assert set(decision.as_crossbar_answer()) == {"allow", "cache", "disclose"}


def test_the_deciding_step_and_rule_are_named(settings):
    decision = settings.policy.decide(
        authrole="user", authid="alice", action="subscribe", uri="app.user.alice.notifications"
    )
    assert decision.step == 3 and "rule #2" in decision.reason and decision.rule.per_user


def test_an_unsafe_authid_never_matches_a_per_user_rule(settings):
    for authid in ("alice.notifications", "*", "#", ""):
        decision = settings.policy.decide(
            authrole="user", authid=authid, action="subscribe", uri="app.user.alice.notifications.notifications"
        )
        assert not decision.allow


# -- role ranking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_roles", "role"),
    [
        (["user", "admin"], "admin"),
        (["admin", "user"], "admin"),
        (["anonymous", "user"], "user"),
        (["billing", "user"], "user"),
        (["billing"], None),
    ],
)
def test_the_session_role_is_the_most_privileged_known_role(settings, token_roles, role):
    assert settings.policy.session_role(token_roles)[0] == role


def test_between_unrelated_roles_the_later_defined_wins_and_permissions_are_the_union():
    policy = load_policy(
        {
            "roles": [
                {"name": "editor", "rules": [{"uri": "app.docs.", "match": "prefix", "allow": {"subscribe": True}}]},
                {
                    "name": "billing",
                    "rules": [{"uri": "app.invoices.", "match": "prefix", "allow": {"subscribe": True}}],
                },
                {"name": "anonymous"},
            ]
        }
    )
    role, known = policy.session_role(["editor", "billing"])
    assert role == "billing" and known == ("editor", "billing")
    via_extra = policy.decide(authrole=role, authid="x", action="subscribe", uri="app.docs.a", session_roles=known)
    own = policy.decide(authrole=role, authid="x", action="subscribe", uri="app.invoices.a", session_roles=known)
    # allowed through the extra role, but not cacheable: another 'billing' session may lack 'editor'
    assert (via_extra.allow, via_extra.cacheable) == (True, False)
    assert (own.allow, own.cacheable) == (True, True)


def test_an_exact_rule_answer_is_not_cacheable_because_crossbar_would_reuse_it_for_a_prefix_request():
    policy = load_policy(
        {"roles": [{"name": "anonymous", "rules": [
            {"uri": "app.news", "match": "exact", "allow": {"subscribe": True, "register": True}},
            {"uri": "app.feed.", "match": "prefix", "allow": {"subscribe": True}},
        ]}]}
    )  # fmt: skip
    for action in ("subscribe", "register"):
        exact = policy.decide(authrole="anonymous", authid=None, action=action, uri="app.news")
        prefix = policy.decide(authrole="anonymous", authid=None, action=action, uri="app.news", match="prefix")
        assert (exact.allow, exact.cacheable, prefix.allow) == (True, False, False)
    # a prefix rule allows every match type of a URI under it: that answer may be cached
    feed = policy.decide(authrole="anonymous", authid=None, action="subscribe", uri="app.feed.x")
    assert (feed.allow, feed.cacheable) == (True, True)


# -- request checks and retain --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "uri", "options", "problem"),
    [
        ("publish", "app.chat.x", {"acknowledge": True}, None),
        ("subscribe", "app." + "x" * 508, {"match": "prefix"}, None),
        ("subscribe", "app." + "x" * 509, {}, "longer than 512 characters"),
        ("publish", "app.chat.x", {"forward_for": [{"session": 1, "authid": "alice", "authrole": "user"}]},
         "forward_for is reserved for router links"),
        ("call", "authenticator.refresh", {"forward_for": []}, "forward_for is reserved for router links"),
        ("subscribe", "app.chat.x", {"forward_for": [{}]}, "forward_for is reserved for router links"),
        ("publish", "app.chat.x", {"retain": True}, None),
        ("publish", "app.chat.x", {"retain": True, "eligible_authid": ["bob"]}, "retain cannot be combined"),
        ("publish", "app.chat.x", {"retain": True, "exclude": [1]}, "retain cannot be combined"),
    ],
)  # fmt: skip
def test_requests_a_client_may_never_make_are_refused_by_name(action, uri, options, problem):
    found = request_problem(action, uri, options, max_uri_length=512)
    assert found == problem if problem is None else problem in found


def test_retain_needs_a_rule_that_allows_it():
    policy = load_policy(
        {"roles": [{"name": "anonymous", "rules": [
            {"uri": "app.status.{authid}", "match": "exact", "allow": {"publish": True}, "retain": True},
            {"uri": "app.chat.", "match": "prefix", "allow": {"publish": True}},
        ]}]}
    )  # fmt: skip

    def publish(uri, retain):
        return policy.decide(authrole="anonymous", authid="alice", action="publish", uri=uri, retain=retain).allow

    assert publish("app.status.alice", retain=True) and publish("app.chat.x", retain=False)
    assert not publish("app.chat.x", retain=True)
    assert not publish("app.status.bob", retain=True)


# -- pattern coverage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "asked", "expected"),
    [
        (("prefix", "app.chat."), ("wildcard", "app.chat..typing"), True),
        (("prefix", "app.chat.r"), ("wildcard", "app.chat..typing"), False),
        (("prefix", "app.chat."), ("wildcard", ".chat.x"), False),
        (("wildcard", "app..x"), ("exact", "app.a.x"), True),
        (("wildcard", "app..x"), ("wildcard", "app..x"), True),
        (("wildcard", "app.a.x"), ("wildcard", "app..x"), False),
        (("wildcard", "app..x"), ("prefix", "app.a.x"), False),
        (("exact", "app.a"), ("prefix", "app.a"), False),
    ],
)
def test_a_pattern_request_is_covered_only_if_every_uri_it_matches_is(rule, asked, expected):
    assert covers(*rule, *asked) is expected


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"roles": []}, "non-empty 'roles'"),
        ({"roles": [{"name": "a", "rules": [{"uri": "x", "match": "glob"}]}]}, "role 'a' rule #1: 'match'"),
        ({"roles": [{"name": "a", "inherit": ["b"]}]}, "inherits 'b', which the policy does not define"),
        ({"roles": [{"name": "a", "inherit": "b"}, {"name": "b", "inherit": "a"}]}, "cycle"),
        (
            {"roles": [{"name": "a", "rules": [{"uri": "app.user.{authid}", "match": "prefix"}]}]},
            "must not end in '{authid}'",
        ),
        ({"roles": [{"name": "a", "rules": [{"uri": "app.u{authid}.x"}]}]}, "whole URI component"),
        ({"roles": [{"name": "a", "rules": [{"uri": "app..x"}]}]}, "empty component"),
        ({"roles": [{"name": "a", "rules": [{"uri": "x", "allow": {"subscribe": "yes"}}]}]}, "true or false"),
        ({"roles": [{"name": "a", "rules": [{"uri": "x", "allow": {"fly": True}}]}]}, "'allow' has unknown key 'fly'"),
        ({"roles": [{"name": "a", "rules": [{"uri": "x", "cache": True}]}]}, "remove 'cache'"),
        ({"roles": [{"name": "a"}, {"name": "a"}]}, "defined twice"),
        ({"roles": [{"name": "user"}]}, "anonymous role 'anonymous' is not defined"),
        (
            {
                "roles": [
                    {
                        "name": "a",
                        "rules": [{"uri": "x.", "match": "prefix", "allow": {"publish": True}, "retain": True}],
                    }
                ]
            },
            "'retain' needs an exact rule that allows publish",
        ),
        ({"roles": [{"name": "a", "rules": [{"uri": "x", "retain": True}]}]}, "'retain' needs an exact rule"),
    ],
)
def test_a_bad_policy_is_refused_with_a_message_naming_the_rule(policy, message):
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert message in str(caught.value)


def test_anonymous_access_can_be_left_out_of_the_policy():
    policy = load_policy({"roles": [{"name": "user"}]}, anonymous_role=None)
    assert policy.defines("user") and not policy.defines("anonymous")


@pytest.mark.parametrize("option", ["eligible", "eligible_authid", "eligible_authrole", "exclude", "exclude_authid",
                                    "exclude_authrole"])  # fmt: skip
def test_a_filtered_publication_is_refused_on_a_realm_with_router_links(option):
    """Router links relay an event without its eligible/exclude options (tests/router/test_cluster.py)."""
    from authenticator.core.policy import LINKED_FILTER_REASON, request_problem

    options = {option: ["x"]}
    assert request_problem("publish", "app.public.news", options, 512, linked=True) == LINKED_FILTER_REASON
    assert request_problem("publish", "app.public.news", options, 512, linked=False) is None
    assert request_problem("publish", "app.public.news", {"acknowledge": True}, 512, linked=True) is None
    assert request_problem("subscribe", "app.public.news", options, 512, linked=True) is None


def test_a_realm_has_rlinks_when_the_components_worker_links_it():
    from authenticator.config.node_config import realm_has_rlinks
    from authenticator.contract import COMPONENT_CLASS

    def node(rlinks):
        realm = {"name": "realm1", "roles": [], **({"rlinks": rlinks} if rlinks is not None else {})}
        return {"workers": [{"type": "router", "realms": [realm], "components": [{"classname": COMPONENT_CLASS}]}]}

    assert realm_has_rlinks(node([{"id": "to-node-2"}]), "realm1") is True
    assert realm_has_rlinks(node([{"id": "to-node-2"}]), "realm2") is False
    assert realm_has_rlinks(node([]), "realm1") is False
    assert realm_has_rlinks(node(None), "realm1") is False
    assert realm_has_rlinks(None, "realm1") is False
