"""The demo issuer's document shares (authenticator/demo/shares.py): a share is one document for one
user until its end, the book is bounded, and a request is checked before anything is kept."""

import json

import pytest

from authenticator.core.policy import load_policy
from authenticator.demo.shares import GRANT_ROLE, ShareBook, ShareRefused, read_share_request
from tests.support.router import REPO

USERS = {"alice": {}, "bob": {}, "root": {}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_share_is_for_its_user_only_and_grants_exactly_the_documents_topic_to_subscribe():
    book = ShareBook(10, Clock())
    share = book.add("42", "alice", "root", 300)
    assert share.topic == "app.doc.42" and share.exp == 1_000_300
    assert share.caps() == [{"uri": "app.doc.42", "match": "exact", "allow": ["subscribe"]}]
    assert book.find("42", "alice") == share and book.live_for("alice") == [share]
    assert book.find("42", "bob") is None and book.live_for("bob") == []
    assert book.find("43", "alice") is None


def test_a_grant_token_lives_a_login_tokens_life_and_never_past_the_shares_end():
    clock = Clock()
    share = ShareBook(10, clock).add("42", "alice", "root", 300)
    assert share.grant_exp(60, clock.now) == 1_000_060  # the issuer's token_ttl_seconds, not the share's 300 s
    assert share.grant_exp(60, clock.now + 270.5) == 1_000_300  # the last one ends with the share
    assert share.grant_exp(60, clock.now + 300) is None  # ended: none


def test_a_grant_token_carries_the_minimal_role_the_shipped_policy_defines_with_no_rights_of_its_own():
    extra = json.loads((REPO / ".crossbar" / "config.json").read_text())["workers"][0]["components"][0]["extra"]
    policy = load_policy(extra["policy"], anonymous_role=extra["anonymous_role"])
    assert GRANT_ROLE == "document-reader" and policy.closure(GRANT_ROLE) == {GRANT_ROLE}  # inherits nothing
    for action, uri in (("subscribe", "app.chat.lobby"), ("subscribe", "app.public.x"), ("subscribe", "app.doc.42"),
                        ("subscribe", "app.user.alice.notifications"), ("publish", "app.doc.42")):  # fmt: skip
        assert not policy.decide(authrole=GRANT_ROLE, authid="alice", action=action, uri=uri).allow, (action, uri)


def test_a_share_ends_at_its_end():
    clock = Clock()
    book = ShareBook(10, clock)
    book.add("42", "alice", "root", 60)
    clock.now += 59.9
    assert book.find("42", "alice") is not None
    clock.now += 0.1
    assert book.find("42", "alice") is None and book.live_for("alice") == []


def test_sharing_again_replaces_the_end_and_takes_no_second_place():
    clock = Clock()
    book = ShareBook(1, clock)
    book.add("42", "alice", "root", 60)
    clock.now += 30
    again = book.add("42", "alice", "root", 60)
    assert again.exp == 1_000_090 and book.live_for("alice") == [again]


def test_the_book_is_bounded_and_says_when_a_place_frees_up():
    clock = Clock()
    book = ShareBook(2, clock)
    book.add("1", "alice", "root", 100)
    book.add("2", "bob", "root", 40)
    with pytest.raises(ShareRefused) as refused:
        book.add("3", "alice", "root", 60)
    assert refused.value.status == 429 and refused.value.retry_after == 40
    assert "2 shares are live" in refused.value.message and "issuer.max_shares" in refused.value.message
    assert "Try again in 40 s" in refused.value.message
    clock.now += 40  # bob's ended: its place is free
    assert book.add("3", "alice", "root", 50).doc == "3"
    assert [s.doc for s in book.live_for("alice")] == ["3", "1"]  # the soonest to end first


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"doc": "4.2", "user": "alice", "seconds": 60}, "'doc'"),  # a second URI component
        ({"doc": "Doc", "user": "alice", "seconds": 60}, "'doc'"),
        ({"doc": "x" * 33, "user": "alice", "seconds": 60}, "'doc'"),
        ({"doc": "", "user": "alice", "seconds": 60}, "'doc'"),
        ({"doc": ["42"], "user": "alice", "seconds": 60}, "'doc'"),
        ({"user": "alice", "seconds": 60}, "'doc'"),
        ({"doc": "42", "user": "mallory", "seconds": 60}, "'user'"),
        ({"doc": "42", "user": None, "seconds": 60}, "'user'"),
        ({"doc": "42", "user": "alice", "seconds": 59}, "'seconds' must be a whole number from 60 to 3600"),
        ({"doc": "42", "user": "alice", "seconds": 3601}, "'seconds'"),
        ({"doc": "42", "user": "alice", "seconds": 60.5}, "'seconds'"),
        ({"doc": "42", "user": "alice", "seconds": True}, "'seconds'"),
        ({"doc": "42", "user": "alice", "seconds": "60"}, "'seconds'"),
    ],
)
def test_a_share_request_of_the_wrong_shape_is_refused_400_naming_the_field_and_what_to_send(body, names):
    with pytest.raises(ShareRefused) as refused:
        read_share_request(body, USERS, 60, 3600)
    assert refused.value.status == 400
    assert names in refused.value.message
    assert '{"doc": "42", "user": "alice", "seconds": 300}' in refused.value.message


def test_a_well_formed_share_request_is_read():
    body = {"doc": "q3-plan_2", "user": "bob", "seconds": 60}
    assert read_share_request(body, USERS, 60, 3600) == ("q3-plan_2", "bob", 60)
