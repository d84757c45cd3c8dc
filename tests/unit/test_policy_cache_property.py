"""What the policy lets Crossbar cache is right for every session that will be handed it.

Crossbar 26 caches an authorizer's answer under (realm, authrole, uri, action): not the authid,
not the match type, not the session's other token roles. So whenever `decide` says cacheable, the
answer must be the same for every authid, every match type and every set of extra roles. Checked
over generated policies (roles, inheritance, exact/prefix/wildcard rules, {authid} rules).
"""

from itertools import chain, combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from authenticator.core.policy import CROSSBAR_ACTIONS as ACTIONS  # the actions Crossbar asks about, and caches
from authenticator.core.policy import MATCHES, load_policy

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
def policies(draw):
    count = draw(st.integers(1, 4))
    roles = []
    for i in range(count):
        inherit = draw(st.lists(st.sampled_from([f"r{j}" for j in range(i)]), unique=True)) if i else []
        roles.append({"name": f"r{i}", "inherit": inherit, "rules": draw(st.lists(rules(), max_size=3))})
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
                for extra in subsets(sorted(policy.roles)):
                    other = policy.decide(
                        **{**request, "authid": authid, "match": match, "session_roles": extra}
                    ).as_crossbar_answer()
                    assert other["allow"] == answer["allow"] and other["disclose"] == answer["disclose"], (
                        request, authid, match, extra,
                    )  # fmt: skip

    cacheable_answers_hold_for_everyone()
    # The property is only worth something if it was exercised: most runs reach it ~150 times.
    print(f"cacheable decisions checked: {len(checked)}")
    assert len(checked) >= 50, f"only {len(checked)} cacheable decisions reached the assertion"
    assert {"subscribe", "register"} <= set(checked)


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
