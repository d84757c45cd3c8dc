"""Grants carried in a token (caps): what the policy lets a token grant, what a grant allows, and
that no grant outlives or widens its session (authenticator/core/grants.py, policy step 4)."""

import json
import shutil
import time

import jwt
import pytest
from click.testing import CliRunner

from authenticator.config.node_config import component_extra
from authenticator.config.settings import ConfigError, load_settings
from authenticator.core.grants import MAX_GRANT_COMPONENTS, MAX_GRANTS, read_grants
from authenticator.core.policy import PolicyError, load_policy
from authenticator.core.reasons import Reason, Rejected
from authenticator.core.session_rules import refresh_refusal
from authenticator.core.tokens import TokenVerifier
from authenticator.ops.cli import main
from tests.support.router import REPO
from tests.support.tokens import mint

SECRET = "grants-" + "s" * 40
SHIPPED = component_extra(REPO / ".crossbar" / "config.json")
POLICY = load_policy(SHIPPED["policy"])  # user: {"uri": "app.doc.", "match": "prefix", "grantable": ["subscribe"]}
WIDER = load_policy({"roles": [
    {"name": "anonymous", "rules": []},
    {"name": "user", "inherit": ["anonymous"], "rules": [
        {"uri": "app.doc.", "match": "prefix", "grantable": ["subscribe", "publish"], "disclose": {"publisher": True}},
        {"uri": "app.draft.{authid}.", "match": "prefix", "grantable": ["subscribe"]},
        {"uri": "app.board..cards", "match": "wildcard", "grantable": ["subscribe", "call", "register", "presence"]},
    ]},
    {"name": "admin", "inherit": ["user"], "rules": []},
    {"name": "backend", "rules": [{"uri": "app.doc.", "match": "prefix", "grantable": ["publish"]}]},
]})  # fmt: skip


def grants(caps, *, policy=WIDER, roles=("user",), authid="alice"):
    return read_grants(caps, claim="caps", policy=policy, roles=roles, authid=authid, max_uri_length=512)


def refusal(caps, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as refused:
        grants(caps, **kwargs)
    return refused.value


def decide(policy, granted, uri, match="exact", action="subscribe", authid="alice", role="user"):
    return policy.decide(authrole=role, authid=authid, action=action, uri=uri, match=match, session_roles=(role,),
                         grants=granted)  # fmt: skip


def grant(uri, match="exact", allow=("subscribe",)):
    return {"uri": uri, "match": match, "allow": list(allow)}


# -- what a grant allows -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "uri", "allowed"),
    [
        ("exact", "app.doc.42", True),
        ("prefix", "app.doc.42", False),  # a prefix reaches app.doc.42x and app.doc.42.y: not granted
        ("wildcard", "app.doc.42", False),
        ("prefix", "app.doc.", False),  # every document
        ("wildcard", "app.doc.", False),
        ("exact", "app.doc.43", False),
        ("exact", "app.doc.42.comments", False),
    ],
)
def test_an_exact_grant_allows_that_topic_and_no_pattern_reaching_beyond_it(match, uri, allowed):
    granted = grants([grant("app.doc.42")], policy=POLICY)
    decision = decide(POLICY, granted, uri, match)
    assert decision.allow is allowed, decision.reason
    assert not decision.cacheable


@pytest.mark.parametrize(
    ("match", "uri", "allowed"),
    [
        ("exact", "app.doc.42.comments", True),
        ("prefix", "app.doc.42.", True),
        ("prefix", "app.doc.42.comments.", True),
        ("wildcard", "app.doc.42..author", True),  # every topic it matches starts with app.doc.42.
        ("prefix", "app.doc.4", False),  # app.doc.4x: other documents
        ("prefix", "app.doc.", False),
        ("wildcard", "app.doc..comments", False),  # any document's comments
        ("exact", "app.doc.420.comments", False),
    ],
)
def test_a_prefix_grant_allows_its_topics_and_patterns_within_them_only(match, uri, allowed):
    granted = grants([grant("app.doc.42.", "prefix")])
    assert decide(WIDER, granted, uri, match).allow is allowed


@pytest.mark.parametrize(
    ("match", "uri", "allowed"),
    [
        ("exact", "app.board.7.cards", True),
        ("wildcard", "app.board..cards", True),
        ("wildcard", "app.board.7.", False),  # app.board.7.anything
        ("prefix", "app.board.", False),
        ("exact", "app.board.7.cards.x", False),
    ],
)
def test_a_wildcard_grant_allows_its_pattern_and_the_topics_it_matches(match, uri, allowed):
    granted = grants([grant("app.board..cards", "wildcard")])
    assert decide(WIDER, granted, uri, match).allow is allowed


def test_a_grant_allows_only_the_actions_it_names():
    granted = grants([grant("app.board..cards", "wildcard", ["call"])])
    assert decide(WIDER, granted, "app.board.1.cards", action="call").allow
    for action in ("subscribe", "publish", "register", "presence"):
        assert not decide(WIDER, granted, "app.board.1.cards", action=action).allow, action


def test_the_grant_that_decided_is_named_and_its_answer_is_never_cacheable():
    granted = grants([grant("app.doc.1"), grant("app.doc.2", allow=["subscribe", "publish"])])
    decision = decide(WIDER, granted, "app.doc.2", action="publish")
    assert (decision.allow, decision.step, decision.cacheable) == (True, 4, False)
    assert decision.grant is granted[1] and "grant #2 (exact 'app.doc.2': publish, subscribe)" in decision.reason
    assert decision.disclose  # the grantable rule's disclose applies
    denied = decide(WIDER, granted, "app.doc.3")
    assert (denied.allow, denied.step) == (False, 5) and "or grant of the session" in denied.reason


def test_a_grant_never_allows_retain():
    granted = grants([grant("app.doc.1", allow=["publish"])])
    assert decide(WIDER, granted, "app.doc.1", action="publish").allow
    retained = WIDER.decide(authrole="user", authid="alice", action="publish", uri="app.doc.1", session_roles=("user",),
                            retain=True, grants=granted)  # fmt: skip
    assert not retained.allow


def test_authid_in_a_grant_is_the_sessions_own():
    alices = grants([grant("app.draft.{authid}.", "prefix")], authid="alice")
    assert alices[0].uri == "app.draft.alice."
    assert decide(WIDER, alices, "app.draft.alice.x").allow
    assert not decide(WIDER, alices, "app.draft.bob.x", authid="bob").allow
    # the grantable rule's {authid} is the session's too: alice cannot be granted bob's drafts
    stolen = refusal([grant("app.draft.bob.", "prefix")], authid="alice")
    assert stolen.reason is Reason.GRANT_NOT_ALLOWED
    assert "grant #1 (prefix 'app.draft.bob.': subscribe)" in stolen.detail


# -- what a token may grant ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caps", "why"),
    [
        ([grant("app.chat.lobby")], "is outside what the policy lets a token grant (grantable here: prefix 'app.doc.'"),
        ([grant("app.", "prefix")], "is outside"),  # wider than the grantable space
        ([grant("app..42", "wildcard")], "is outside"),
        (
            [grant("app.doc.42", allow=["publish"])],
            "asks for an action the policy does not let a token grant there (prefix 'app.doc.' grants subscribe)",
        ),
        ([grant("app.doc.42", allow=["subscribe", "call"])], "asks for an action"),
        ([grant("wamp.session.kill", allow=["call"])], "reaches wamp.* or authenticator.*"),
        ([grant("authenticator.revoke", allow=["call"])], "reaches wamp.* or authenticator.*"),
        ([grant("wam", "prefix", ["call"])], "reaches wamp.* or authenticator.*"),
        ([grant(".session.kill", "wildcard", ["call"])], "reaches wamp.* or authenticator.*"),
    ],
)
def test_a_grant_outside_the_grantable_space_refuses_the_token_and_names_the_grant(caps, why):
    refused = refusal([grant("app.doc.1"), *caps], policy=POLICY)
    assert refused.reason is Reason.GRANT_NOT_ALLOWED and refused.reason.uri == "authenticator.error.grant_not_allowed"
    assert refused.detail.startswith("grant #2 (") and why in refused.detail, refused.detail


def test_only_roles_whose_rules_say_grantable_may_carry_grants():
    assert refusal([grant("app.doc.1")], roles=("anonymous",)).detail.endswith("(nothing is grantable to these roles)")
    assert grants([grant("app.doc.1")], roles=("admin",))  # admin inherits user
    assert grants([grant("app.doc.1", allow=["publish"])], roles=("backend",))
    assert refusal([grant("app.doc.1")], roles=("backend",)).reason is Reason.GRANT_NOT_ALLOWED


@pytest.mark.parametrize(
    ("caps", "why"),
    [
        ("app.doc.1", "must be a list of grants"),
        ({"uri": "app.doc.1"}, "must be a list of grants"),
        ([grant("app.doc.1")] * (MAX_GRANTS + 1), f"lists {MAX_GRANTS + 1} grants; at most {MAX_GRANTS}"),
        (["app.doc.1"], "grant #1 must be an object"),
        ([{"uri": "app.doc.1", "allow": ["subscribe"], "retain": True}], "unknown key 'retain'"),
        ([{"allow": ["subscribe"]}], "needs a non-empty 'uri'"),
        ([{"uri": 7, "allow": ["subscribe"]}], "needs a non-empty 'uri'"),
        ([grant("app.doc." + "x" * 600)], "longer than 512 characters"),
        ([grant("app.doc." + ".".join("x" * MAX_GRANT_COMPONENTS))], f"or {MAX_GRANT_COMPONENTS} components"),
        ([grant("app.doc.1", "glob")], "'match' must be one of"),
        ([{"uri": "app.doc.1", "allow": []}], "'allow' must list actions"),
        ([{"uri": "app.doc.1", "allow": "subscribe"}], "'allow' must list actions"),
        ([{"uri": "app.doc.1", "allow": ["read"]}], "'allow' may list subscribe"),
        ([grant("app..1")], "has an empty component"),
        ([grant("app.doc.x{authid}")], "must be a whole URI component"),
        ([grant("app.doc.{authid}", "prefix")], "a prefix must not end in '{authid}'"),
    ],
)
def test_a_claim_that_is_not_a_bounded_list_of_grants_is_an_invalid_claim(caps, why):
    refused = refusal(caps)
    assert refused.reason is Reason.INVALID_CLAIM and why in refused.detail, refused.detail
    assert len(refused.message) < 600


def test_no_claim_is_no_grants():
    assert grants(None) == ()


# -- the operator's side: grantable rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "match"),
    [("wamp.", "prefix"), ("wamp.session.kill", "exact"), ("authenticator.", "prefix"), ("authenticator.x", "exact"),
     ("a", "prefix"), ("w", "prefix"), (".session.", "wildcard"), ("{authid}.x", "exact"), ("{authid}.", "prefix")],
)  # fmt: skip
def test_a_grantable_rule_reaching_wamp_or_authenticator_is_refused_at_load_naming_role_and_rule(uri, match):
    spec = {"roles": [{"name": "user", "rules": [
        {"uri": "app.doc.", "match": "prefix", "grantable": ["subscribe"]},
        {"uri": uri, "match": match, "grantable": ["call"]},
    ]}]}  # fmt: skip
    with pytest.raises(PolicyError, match=r"role 'user' rule #2: .* reaches wamp\.\* or authenticator\.\*"):
        load_policy(spec, anonymous_role=None)


@pytest.mark.parametrize(
    ("grantable", "why"),
    [
        ("subscribe", "'grantable' lists actions"),
        (["read"], "'grantable' may list subscribe"),
        ([1], "'grantable' lists actions"),
    ],
)
def test_a_grantable_rule_names_actions_of_the_policy(grantable, why):
    spec = {"roles": [{"name": "user", "rules": [{"uri": "app.doc.", "match": "prefix", "grantable": grantable}]}]}
    with pytest.raises(PolicyError, match=f"role 'user' rule #1: {why}"):
        load_policy(spec, anonymous_role=None)


def test_a_grantable_rule_allows_nothing_by_itself():
    assert not decide(POLICY, (), "app.doc.42").allow
    assert POLICY.grantable_rules(["admin"])[0].uri == "app.doc."  # inherited from user


def test_presence_granted_on_a_topic_is_tracked():
    assert WIDER.may_grant_presence("app.board.7.cards") and not WIDER.may_grant_presence("app.doc.7")


# -- tokens --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)


def settings(**claims):
    return load_settings({**SHIPPED, "claims": {**SHIPPED.get("claims", {}), **claims}}, REPO, generate_secret=None)


def token(**claims):
    now = int(time.time())
    return jwt.encode({"sub": "alice", "roles": ["user"], "iat": now, "exp": now + 60, **claims}, SECRET, "HS256")


def test_a_token_carries_its_grants_into_the_identity():
    identity = TokenVerifier(settings()).verify(token(caps=[grant("app.doc.42")]))
    assert [g.as_claim() for g in identity.grants] == [{"uri": "app.doc.42", "match": "exact", "allow": ["subscribe"]}]
    assert TokenVerifier(settings()).verify(token()).grants == ()


def test_a_token_granting_outside_the_grantable_space_is_refused_with_grant_not_allowed():
    with pytest.raises(Rejected) as refused:
        TokenVerifier(settings()).verify(token(caps=[grant("app.chat.lobby")]))
    assert refused.value.reason is Reason.GRANT_NOT_ALLOWED and refused.value.authid == "alice"
    assert "grant #1 (exact 'app.chat.lobby': subscribe)" in refused.value.message


def test_the_grants_claim_is_configurable():
    assert settings().claims.caps_claim == "caps"
    verifier = TokenVerifier(settings(caps="grants"))
    assert verifier.verify(token(grants=[grant("app.doc.1")])).grants[0].uri == "app.doc.1"
    assert verifier.verify(token(caps=[grant("app.chat.x")])).grants == ()  # not the grants claim here
    with pytest.raises(ConfigError, match="'claims.caps' must name the claim"):
        settings(caps="sub")


# -- refresh -------------------------------------------------------------------------------------


def test_a_refresh_must_carry_exactly_the_sessions_grants():
    verifier = TokenVerifier(settings())
    held = verifier.verify(token(caps=[grant("app.doc.1"), grant("app.doc.2")])).grants
    same = verifier.verify(token(caps=[grant("app.doc.2"), grant("app.doc.1")]))  # another order
    assert refresh_refusal("alice", frozenset({"user"}), same, held) is None
    for caps in ([grant("app.doc.1"), grant("app.doc.2"), grant("app.doc.3")], [grant("app.doc.1")], None,
                 [grant("app.doc.", "prefix")]):  # fmt: skip
        refused = refresh_refusal("alice", frozenset({"user"}), verifier.verify(token(caps=caps)), held)
        assert refused.reason is Reason.REFRESH_REFUSED, caps
        assert refused.detail == "its grants (caps) differ from the session's; reconnect with it"
    widened = refresh_refusal("alice", frozenset({"user"}), verifier.verify(token(caps=[grant("app.doc.1")])), ())
    assert widened is not None and widened.reason is Reason.REFRESH_REFUSED


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cbdir(tmp_path):
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.json")
    return str(tmp_path)


def cli(*args):
    return CliRunner().invoke(main, list(args))


def test_explain_with_caps_names_the_grant_that_decided(cbdir):
    caps = json.dumps([grant("app.doc.42")])
    allowed = cli("explain", "--authid", "alice", "--role", "user", "--caps", caps, "subscribe", "app.doc.42",
                  "--cbdir", cbdir)  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert "decided at step 4: allowed by the session's grant #1 (exact 'app.doc.42': subscribe)" in allowed.output
    assert "cacheable by Crossbar: no" in allowed.output
    wider = cli("explain", "--authid", "alice", "--role", "user", "--caps", caps, "--match", "prefix", "subscribe",
                "app.doc.", "--cbdir", cbdir)  # fmt: skip
    assert wider.exit_code == 1 and "decided at step 5" in wider.output


def test_explain_with_caps_the_policy_does_not_allow_says_the_token_would_be_refused(cbdir):
    caps = json.dumps([grant("app.chat.lobby", allow=["publish"])])
    refused = cli("explain", "--authid", "alice", "--role", "user", "--caps", caps, "subscribe", "app.chat.lobby",
                  "--cbdir", cbdir)  # fmt: skip
    assert refused.exit_code == 1 and "grant_not_allowed" in refused.output and "grant #1" in refused.output


def test_explain_takes_grants_from_a_token_and_decode_lists_them(cbdir):
    minted = mint("alice", ["user"], caps=[grant("app.doc.7.", "prefix"), grant("app.doc.8")], secret=SECRET)
    explained = cli("explain", "--token", minted, "--match", "prefix", "subscribe", "app.doc.7.", "--cbdir", cbdir)
    assert explained.exit_code == 0 and "grant #1 (prefix 'app.doc.7.': subscribe)" in explained.output
    decoded = cli("decode", minted, "--cbdir", cbdir)
    assert decoded.exit_code == 0 and "grants: 2" in decoded.output
    assert "grant #2 (exact 'app.doc.8': subscribe), grantable by role 'user' rule #3 (prefix 'app.doc.')" in (
        decoded.output
    )
    assert "grants: none" in cli("decode", mint("alice", ["user"], secret=SECRET), "--cbdir", cbdir).output
