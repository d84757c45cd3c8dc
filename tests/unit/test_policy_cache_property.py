"""What the policy lets Crossbar cache is right for every session that will be handed it.

Crossbar 26 caches an authorizer's answer under (realm, authrole, uri, action): not the authid,
not the match type, not the session's other token roles. So whenever `decide` says cacheable, the
answer must be the same for every authid, every match type and every set of extra roles -- and
every set of grants a session's token carries (caps): grants differ between sessions of a role.
Checked over generated policies (roles, inheritance, exact/prefix/wildcard rules, {authid} rules,
grantable rules) and generated grants.
"""

from itertools import chain, combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from authenticator.core.policy import CROSSBAR_ACTIONS as ACTIONS  # the actions Crossbar asks about, and caches
from authenticator.core.policy import MATCHES, Grant, load_policy, touches_reserved

COMPONENTS = ("a", "b", "c")
AUTHIDS = ("alice", "bob", None)
# Deterministic and without the example database: the outcome does not depend on the machine,
# the working directory or an earlier run.
EXAMPLES = settings(max_examples=600, derandomize=True, database=None, deadline=None)


@st.composite
def rules(draw):
    parts = draw(st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 0:  # mostly role-wide rules: those are the cacheable ones
        parts[draw(st.integers(0, len(parts) - 1))] = "{authid}"
    match = draw(st.sampled_from(("prefix", *MATCHES)))  # prefix rules give the cacheable answers
    if match == "wildcard" and len(parts) > 1 and draw(st.booleans()):
        parts[draw(st.integers(0, len(parts) - 1))] = ""
    uri = ".".join(parts)
    if match == "prefix" and (parts[-1] == "{authid}" or draw(st.booleans())):
        uri += "."
    allow = draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4, unique=True))
    return {"uri": uri, "match": match, "allow": {a: True for a in allow}, "disclose": {"publisher": True}}


@st.composite
def grantable_rules(draw):
    """A rule that lets tokens grant within it (sometimes also allowing something itself)."""
    rule = draw(rules())
    if not draw(st.booleans()):
        rule["allow"] = {}
    rule["grantable"] = draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4, unique=True))
    return rule


@st.composite
def policies(draw):
    count = draw(st.integers(1, 4))
    roles = []
    for i in range(count):
        inherit = draw(st.lists(st.sampled_from([f"r{j}" for j in range(i)]), unique=True)) if i else []
        roles.append({"name": f"r{i}", "inherit": inherit, "rules": draw(st.lists(rules(), max_size=3))})
    for role in roles:  # drawn after the others: the rules above are drawn as they were before grants
        grantable = draw(st.lists(grantable_rules(), max_size=1))
        role["rules"] += [r for r in grantable if not touches_reserved(r["uri"], r["match"])]
    return load_policy({"roles": roles}, anonymous_role=None)


@st.composite
def requests(draw, policy):
    """A request near the policy's rules (so that allows, and cacheable ones, are common)."""
    rule_uris = [r.uri for role in policy.roles.values() for r in role.rules] or ["a"]
    base = draw(st.sampled_from(rule_uris)).replace("{authid}", draw(st.sampled_from(("alice", "bob"))))
    tail = draw(st.sampled_from(("", "a", ".a", ".b.c")))
    return {
        "authrole": draw(st.sampled_from(sorted(policy.roles))),
        "authid": draw(st.sampled_from(AUTHIDS)),
        "action": draw(st.sampled_from((*ACTIONS, "subscribe", "register"))),
        "uri": (base + tail).strip(".") if draw(st.booleans()) else base + tail,
        "match": draw(st.sampled_from(MATCHES)),
        "session_roles": tuple(draw(st.lists(st.sampled_from(sorted(policy.roles)), max_size=3, unique=True))),
    }


def grant_sets(policy, request):
    """Grant sets a session of the role could hold: none, one exactly covering the request (every
    action, through a rule that discloses or one that does not), and grants near the request. Not
    only grants a login would admit: the property must hold whatever the grants are."""
    rules = [r for role in policy.roles.values() for r in role.rules] or [None]
    disclosing = next((r for r in rules if r is not None and r.disclose_publisher), rules[0])
    plain = next((r for r in rules if r is not None and not r.disclose_publisher), rules[0])
    if rules[0] is None:
        return [()]
    uri, match = request["uri"], request["match"]
    near = uri.rsplit(".", 1)[0] + "." if "." in uri.strip(".") else uri
    everything = frozenset(ACTIONS)
    return [
        (),
        (Grant(0, uri, match, everything, disclosing),),
        (Grant(0, uri, "exact", everything, plain),),
        (Grant(0, near, "prefix", everything, plain), Grant(1, uri, "wildcard", everything, disclosing)),
    ]


def subsets(items):
    return chain.from_iterable(combinations(items, n) for n in range(len(items) + 1))


def test_a_cacheable_answer_is_the_answer_of_every_session_of_the_role():
    checked = []

    @EXAMPLES
    @given(st.data())
    def cacheable_answers_hold_for_everyone(data):
        policy = data.draw(policies())
        request = data.draw(requests(policy))
        decision = policy.decide(**request)
        if not decision.cacheable:
            return
        checked.append(request["action"])
        answer = decision.as_crossbar_answer()
        for authid in AUTHIDS:
            for match in MATCHES:
                other_request = {**request, "authid": authid, "match": match}
                for grants in grant_sets(policy, other_request):
                    for extra in subsets(sorted(policy.roles)):
                        other = policy.decide(
                            **{**other_request, "session_roles": extra}, grants=grants
                        ).as_crossbar_answer()
                        assert other["allow"] == answer["allow"] and other["disclose"] == answer["disclose"], (
                            request, authid, match, extra, grants,
                        )  # fmt: skip

    cacheable_answers_hold_for_everyone()
    # The property is only worth something if it was exercised: most runs reach it ~150 times.
    print(f"cacheable decisions checked: {len(checked)}")
    assert len(checked) >= 50, f"only {len(checked)} cacheable decisions reached the assertion"
    assert {"subscribe", "register"} <= set(checked)


def test_an_answer_a_grant_decided_is_never_cacheable_and_a_grant_never_narrows_the_rules():
    by_grant, widened = [], []

    @EXAMPLES
    @given(st.data())
    def grants_are_per_session(data):
        policy = data.draw(policies())
        request = data.draw(requests(policy))
        without = policy.decide(**request)
        for grants in grant_sets(policy, request):
            decision = policy.decide(**request, grants=grants)
            if decision.grant is not None:
                by_grant.append(request["action"])
                assert not decision.cacheable, (request, grants)
                assert decision.step == 4 and not without.allow, (request, grants)
                widened.append(decision.allow)
            else:
                # the rules decided: the answer without grants (the denial's text may mention grants)
                assert decision.as_crossbar_answer() == without.as_crossbar_answer(), (request, grants)
                assert (decision.cacheable, decision.rule) == (without.cacheable, without.rule), (request, grants)

    grants_are_per_session()
    print(f"grant decisions checked: {len(by_grant)}")
    assert len(by_grant) >= 50, f"only {len(by_grant)} grant decisions reached the assertion"
    assert {"subscribe", "register", "publish", "call"} <= set(by_grant)


def test_publish_and_call_answers_are_never_cacheable():
    seen = []

    @EXAMPLES
    @given(st.data())
    def never_cached(data):
        policy = data.draw(policies())
        request = data.draw(requests(policy))
        if request["action"] not in ("publish", "call"):
            return
        decision = policy.decide(**request)
        seen.append(decision.allow)
        assert not decision.cacheable, request

    never_cached()
    assert seen.count(True) >= 50, f"only {seen.count(True)} allowed publish/call decisions were checked"
