"""Idempotency keys of POST /publish, the pure part (authenticator/core/idempotency.py) and how a
request's keys are read (core/publish_request.idempotency_keys). Through the real router:
tests/router/test_idempotent_publish.py."""

import pytest

from authenticator.config.node_config import component_extra
from authenticator.core.idempotency import (
    MAX_KEY_LENGTH,
    KeyProblem,
    MemoryIdempotency,
    State,
    checked_key,
    fingerprint,
    scope,
)
from authenticator.core.publish_request import (
    BodyProblem,
    Publication,
    Refusal,
    idempotency_keys,
    parse_body,
)
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


NEWS = fingerprint("app.public.news", ["a"], {}, {})
OTHER = fingerprint("app.public.news", ["b"], {}, {})


def test_a_key_is_1_to_128_visible_ascii_characters_and_a_bad_one_is_described_never_quoted():
    assert checked_key("8e03978e-40d5-43e8-bc93-6894a57f9324", "k") == "8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert checked_key("x" * MAX_KEY_LENGTH, "k") == "x" * MAX_KEY_LENGTH
    cases = {
        "": "it is empty",
        "x" * (MAX_KEY_LENGTH + 1): "it has 129 characters",
        "ab cd": "character 3 is not visible ASCII",
        "ab\ncd": "character 3 is not visible ASCII",
        "ab\x1b[2Jcd": "character 3 is not visible ASCII",
        "clé": "character 3 is not visible ASCII",
    }
    for key, expected in cases.items():
        with pytest.raises(KeyProblem) as refused:
            checked_key(key, "The Idempotency-Key header")
        assert expected in str(refused.value)
        assert key not in str(refused.value) or not key
    with pytest.raises(KeyProblem, match="must be a string"):
        checked_key(42, "'idempotency_key'")


def test_the_scope_is_per_authid_and_unambiguous():
    assert scope("alice", "k1") != scope("bob", "k1")
    assert scope("a:b", "c") != scope("a", "b:c")
    assert len(scope("x" * 64, "y" * 128)) == 32  # what is kept per key is bounded


def test_the_fingerprint_is_the_publication_not_its_spelling():
    assert fingerprint("t", [1], {"a": 1, "b": 2}, {}) == fingerprint("t", [1], {"b": 2, "a": 1}, {})
    assert fingerprint("t", [1], {}, {}) != fingerprint("t", [2], {}, {})
    assert fingerprint("t", [], {}, {}) != fingerprint("t", [], {}, {"retain": True})
    assert fingerprint("t", [], {}, {}) != fingerprint("u", [], {}, {})


def test_the_first_request_reserves_a_duplicate_in_flight_waits_and_a_settled_key_answers_its_id():
    keys = MemoryIdempotency(clock=Clock())
    (first,) = keys.reserve([(scope("billing", "k"), NEWS)])
    assert first.state is State.RESERVED
    assert keys.reserve([(scope("billing", "k"), NEWS)])[0].state is State.IN_PROGRESS
    assert keys.reserve([(scope("billing", "k"), OTHER)])[0].state is State.OTHER_PUBLICATION
    keys.settle([(scope("billing", "k"), first.owner, 4711)])
    again = keys.reserve([(scope("billing", "k"), NEWS)])[0]
    assert (again.state, again.publication_id) == (State.DONE, 4711)
    assert keys.reserve([(scope("billing", "k"), OTHER)])[0].state is State.OTHER_PUBLICATION
    # another authid's same key is its own
    assert keys.reserve([(scope("shop", "k"), OTHER)])[0].state is State.RESERVED


def test_a_released_key_is_free_for_the_corrected_retry_and_only_its_owner_may_release_or_settle():
    keys = MemoryIdempotency(clock=Clock())
    name = scope("billing", "k")
    (first,) = keys.reserve([(name, NEWS)])
    keys.release([(name, "someone-else")])
    keys.settle([(name, "someone-else", 1)])
    assert keys.reserve([(name, NEWS)])[0].state is State.IN_PROGRESS
    keys.release([(name, first.owner)])
    corrected = keys.reserve([(name, OTHER)])[0]  # the same key, now with the corrected publication
    assert corrected.state is State.RESERVED


def test_a_key_is_answered_for_the_window_and_free_after_it():
    clock = Clock()
    keys = MemoryIdempotency(clock=clock, window_seconds=3600)
    name = scope("billing", "k")
    (first,) = keys.reserve([(name, NEWS)])
    keys.settle([(name, first.owner, 7)])
    clock.now += 3599
    assert keys.reserve([(name, NEWS)])[0].state is State.DONE
    clock.now += 2
    assert keys.reserve([(name, OTHER)])[0].state is State.RESERVED
    assert len(keys) == 1  # the expired entry is gone, not kept beside


def test_a_reservation_whose_request_never_answered_expires_after_the_pending_time():
    clock = Clock()
    keys = MemoryIdempotency(clock=clock, pending_seconds=30)
    name = scope("billing", "k")
    keys.reserve([(name, NEWS)])
    clock.now += 29
    assert keys.reserve([(name, NEWS)])[0].state is State.IN_PROGRESS
    clock.now += 2
    assert keys.reserve([(name, NEWS)])[0].state is State.RESERVED


def test_at_the_bound_the_oldest_published_key_is_forgotten_and_keys_in_flight_never_are():
    clock = Clock()
    keys = MemoryIdempotency(clock=clock, max_keys=3)
    names = [scope("billing", f"k{i}") for i in range(5)]
    in_flight = keys.reserve([(names[0], NEWS)])[0]
    for name in names[1:3]:
        (claim,) = keys.reserve([(name, NEWS)])
        keys.settle([(name, claim.owner, 1)])
    assert len(keys) == 3
    assert keys.reserve([(names[3], NEWS)])[0].state is State.RESERVED  # names[1] forgotten, not names[0]
    assert len(keys) == 3 and keys.forgotten == 1
    assert keys.reserve([(names[0], NEWS)])[0].state is State.IN_PROGRESS
    assert keys.reserve([(names[1], NEWS)])[0].state is State.RESERVED  # forgotten: a retry publishes again
    assert keys.forgotten == 2  # names[2], the last published one, made room
    # every kept key in flight (names 0, 3, 1): a new key is refused, nothing forgotten
    assert keys.reserve([(names[4], NEWS)])[0].state is State.FULL
    assert keys.forgotten == 2 and len(keys) == 3
    assert keys.reserve([(names[0], NEWS)])[0].state is State.IN_PROGRESS
    assert in_flight.owner


def test_a_flood_of_keys_keeps_the_store_at_its_bound():
    keys = MemoryIdempotency(clock=Clock(), max_keys=1000)
    for i in range(20_000):
        name = scope("flood", str(i))
        (claim,) = keys.reserve([(name, NEWS)])
        keys.settle([(name, claim.owner, i)])
    assert len(keys) == 1000 and keys.forgotten == 19_000


def items(body: bytes):
    return parse_body(body, max_batch=100, max_uri_length=512)


def test_the_header_names_a_single_publication_and_a_batch_carries_a_key_per_publication():
    batch, parsed = items(b'{"topic": "app.public.news"}')
    assert idempotency_keys(batch, parsed, [b"  k-1 "]) == ["k-1"]
    batch, parsed = items(b'{"topic": "app.public.news", "idempotency_key": "k-2"}')
    assert idempotency_keys(batch, parsed, None) == ["k-2"]
    batch, parsed = items(b'[{"topic": "app.a", "idempotency_key": "a"}, {"topic": "app.b"}]')
    assert idempotency_keys(batch, parsed, None) == ["a", None]


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        (b'[{"topic": "app.a"}]', [b"k"], "in a batch, give each publication its own 'idempotency_key'"),
        (b'{"topic": "app.a", "idempotency_key": "k"}', [b"k"], "given twice"),
        (b'{"topic": "app.a"}', [b"k", b"l"], "Send one Idempotency-Key header"),
        (b'{"topic": "app.a"}', [b"x" * 200], "it has 200 characters"),
        (b'{"topic": "app.a"}', ["clé".encode()], "is not visible ASCII"),
        (b'{"topic": "app.a"}', [b""], "it is empty"),
    ],
)
def test_an_ambiguous_or_bad_header_refuses_the_request_whole(body, header, expected):
    batch, parsed = items(body)
    with pytest.raises(BodyProblem) as refused:
        idempotency_keys(batch, parsed, header)
    assert expected in str(refused.value)


def test_a_bad_key_in_a_single_body_refuses_it_and_in_a_batch_refuses_that_publication_only():
    with pytest.raises(BodyProblem, match="'idempotency_key' must be 1 to 128"):
        items(b'{"topic": "app.a", "idempotency_key": "has space"}')
    batch, parsed = items(b'[{"topic": "app.a", "idempotency_key": "a b"}, {"topic": "app.b", "idempotency_key": "b"}]')
    assert isinstance(parsed[0], Refusal) and "not visible ASCII" in parsed[0].message
    assert isinstance(parsed[1], Publication)
    assert idempotency_keys(batch, parsed, None) == [None, "b"]


def test_a_key_repeated_within_a_batch_refuses_the_later_publication():
    batch, parsed = items(b'[{"topic": "app.a", "idempotency_key": "k"}, {"topic": "app.b", "idempotency_key": "k"}]')
    assert idempotency_keys(batch, parsed, None) == ["k", None]
    assert isinstance(parsed[1], Refusal) and "repeats the key of publication 1" in parsed[1].message


def test_the_window_and_the_bound_are_read_from_the_components_publish_settings(tmp_path, monkeypatch):
    from authenticator.config.settings import ConfigError, load_settings

    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    extra = component_extra(REPO / ".crossbar" / "config.json")
    defaults = load_settings(extra, tmp_path).publish
    assert (defaults.idempotency_window_seconds, defaults.idempotency_max_keys) == (86_400, 100_000)
    chosen = load_settings({**extra, "publish": {"idempotency_window_seconds": 3600, "idempotency_max_keys": 10}},
                           tmp_path).publish  # fmt: skip
    assert (chosen.idempotency_window_seconds, chosen.idempotency_max_keys) == (3600, 10)
    for bad, expected in (
        ({"idempotency_window_seconds": 10}, "'publish.idempotency_window_seconds' must be a whole number from 60"),
        ({"idempotency_max_keys": True}, "'publish.idempotency_max_keys' must be a whole number"),
        ({"idempotency_window": 60}, "did you mean 'idempotency_window_seconds'"),
    ):
        with pytest.raises(ConfigError, match=expected):
            load_settings({**extra, "publish": bad}, tmp_path)
