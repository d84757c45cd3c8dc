"""A session reuses its publish ALLOW only for publications whose options no decision reads
(authenticator/patches/publish_decisions.py): for those, the authorizer's answer must be the answer
it gives the same session and topic without options. Checked over Crossbar's whole PUBLISH option
vocabulary with the shipped policy, for users whose rules allow, deny, and keep history."""

from hypothesis import given, settings
from hypothesis import strategies as st

from authenticator.core.policy import publish_decision_reusable
from authenticator.server.authorizer import Authorizer
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET

# Every option autobahn.wamp.message.Publish.marshal_options can carry, and a key it may add later.
OPTION_KEYS = ("acknowledge", "exclude_me", "exclude", "exclude_authid", "exclude_authrole", "eligible",
               "eligible_authid", "eligible_authrole", "retain", "transaction_hash", "forward_for", "enc_algo",
               "enc_key", "enc_serializer", "x_future_option")  # fmt: skip
VALUES = st.one_of(st.booleans(), st.none(), st.just(["bob"]), st.just([1]), st.just("cbor"),
                   st.just([{"session": 1, "authid": "bob", "authrole": "user"}]))  # fmt: skip
TOPICS = ("app.chat.lobby", "app.user.alice.notifications", "app.user.bob.notifications", "app.public.news", "x")


class _Log:
    def warn(self, *args, **kwargs):
        pass


def test_a_reusable_publication_gets_the_answer_of_one_without_options(monkeypatch):
    from authenticator.config.node_config import component_extra
    from authenticator.config.settings import load_settings

    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)  # this process's own JWT_SECRET plays no part
    shipped = load_settings(component_extra(REPO / ".crossbar" / "config.json"), REPO / ".crossbar",
                            generate_secret=None)  # fmt: skip
    authorizer = Authorizer(shipped, lambda session: ["user"], _Log(), ())
    checked = {"with options": 0, "allowed": 0, "denied": 0}

    @settings(max_examples=500, derandomize=True, database=None, deadline=None)
    @given(st.sampled_from(TOPICS), st.sampled_from(("user", "admin")),
           st.one_of(st.dictionaries(st.sampled_from(OPTION_KEYS), VALUES, max_size=4),  # mostly not reusable
                     st.dictionaries(st.sampled_from(("acknowledge", "exclude_me")), VALUES)))  # fmt: skip
    def reusable_means_the_same_answer(topic, role, options):
        session = {"authid": "alice", "authrole": role, "session": 1}
        if publish_decision_reusable(options):
            answer = authorizer.authorize(session, topic, "publish", options)
            assert answer == authorizer.authorize(session, topic, "publish", {})
            checked["with options"] += bool(options)
            checked["allowed" if answer["allow"] else "denied"] += 1

    reusable_means_the_same_answer()
    # the property reached its assertion: with options, for allowed and denied publications
    assert min(checked.values()) >= 50, checked


def test_every_option_a_decision_reads_is_decided_afresh():
    for key in ("forward_for", "retain", "eligible", "exclude", "exclude_authid", "eligible_authrole", "enc_algo",
                "x_future_option"):  # fmt: skip
        assert not publish_decision_reusable({key: True}), key
    assert publish_decision_reusable({"acknowledge": True, "exclude_me": False})
    assert publish_decision_reusable(None) and publish_decision_reusable({})
