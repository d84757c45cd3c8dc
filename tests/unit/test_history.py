"""The history stream (authenticator/core/history.py): a reader who gives a position gets every
event after it in order, or recovered False and nothing; a stale or guessed position is detected."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authenticator.core.history import (
    MAX_LIMIT,
    MAX_OFFSET,
    MemoryHistory,
    Position,
    PositionProblem,
    read_position,
)

SIZE, TTL = 5, 100.0


class Clock:
    """Whole milliseconds (the Redis store keeps times in ms), so both stores and the model agree
    at the ttl's boundary."""

    def __init__(self) -> None:
        self.ms = 1_000_000

    @property
    def now(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)

    def __call__(self) -> float:
        return self.now


def history(clock=None, **kwargs) -> MemoryHistory:
    return MemoryHistory(clock=clock or Clock(), **kwargs)


def append(h: MemoryHistory, topic: str, n: int) -> list[Position]:
    return [h.append(topic, [i], {"n": i}, "billing", size=SIZE, ttl_seconds=TTL) for i in range(n)]


def read(h: MemoryHistory, topic: str, since, limit: int = 100):
    return h.read(topic, since, limit, size=SIZE, ttl_seconds=TTL)


def test_the_events_after_a_position_come_in_order_with_their_positions():
    h = history()
    positions = append(h, "app.chat.x", 4)
    answer = read(h, "app.chat.x", positions[0])
    assert answer.recovered and answer.position == positions[-1]
    assert [(p.offset, e.args) for p, e in answer.events] == [(2, (1,)), (3, (2,)), (4, (3,))]
    assert read(h, "app.chat.x", positions[-1]).events == () and read(h, "app.chat.x", positions[-1]).recovered


def test_a_position_of_another_epoch_or_from_the_future_or_cut_by_size_is_not_recovered():
    h = history()
    positions = append(h, "t", 3)
    restarted = history()  # a new process: the same topic, another epoch
    append(restarted, "t", 3)
    assert (read(restarted, "t", positions[0]).recovered, read(restarted, "t", positions[0]).events) == (False, ())
    guessed = Position(positions[-1].offset + 1, positions[-1].epoch)
    assert read(h, "t", guessed).recovered is False and read(h, "t", guessed).events == ()
    append(h, "t", SIZE)  # offsets 4..8: offset 2 and 3 are cut, so nothing after offset 1 is whole
    cut = read(h, "t", positions[0])
    assert (cut.recovered, cut.events) == (False, ())
    assert read(h, "t", Position(3, positions[0].epoch)).recovered  # 4..8 are all held


def test_events_past_their_ttl_are_not_recovered_and_a_stream_evicted_for_room_gets_a_new_epoch():
    clock = Clock()
    h = history(clock, max_streams=2)
    first = append(h, "a", 2)
    clock.advance(TTL + 1)
    assert read(h, "a", first[0]).recovered is False
    assert read(h, "a", first[1]).recovered  # nothing after it was lost: nothing came
    append(h, "b", 1)
    append(h, "c", 1)  # a third stream: "a" is the least recently used, dropped
    again = read(h, "a", first[1])
    assert again.recovered is False and again.position.epoch != first[1].epoch and len(h) == 2


def test_more_events_than_the_limit_come_in_pages_that_say_so():
    h = history()
    positions = append(h, "t", 5)
    page = read(h, "t", Position(0, positions[0].epoch), limit=2)
    assert page.recovered and [p.offset for p, _ in page.events] == [1, 2] and page.position.offset == 5
    rest = read(h, "t", page.events[-1][0], limit=10)
    assert [p.offset for p, _ in rest.events] == [3, 4, 5]
    with pytest.raises(ValueError):
        read(h, "t", None, limit=MAX_LIMIT + 1)


@pytest.mark.parametrize(
    "value",
    [{"offset": 1}, {"offset": 1, "epoch": "e", "x": 1}, {"offset": -1, "epoch": "e"}, {"offset": True, "epoch": "e"},
     {"offset": 1.0, "epoch": "e"}, {"offset": MAX_OFFSET + 1, "epoch": "e"}, {"offset": 1, "epoch": ""},
     {"offset": 1, "epoch": "e" * 65}, {"offset": 1, "epoch": 7}, [1, "e"], "1:e"],
)  # fmt: skip
def test_a_since_that_is_not_a_position_is_refused_saying_what_one_is(value):
    with pytest.raises(PositionProblem):
        read_position(value)


def test_a_position_as_history_returns_it_is_read_back_unchanged():
    position = history().append("t", [], {}, None, size=SIZE, ttl_seconds=TTL)
    assert read_position(position.as_wire()) == position and read_position(None) is None


# -- the property: against a model of what was kept ---------------------------------------------

APPEND = st.tuples(st.just("append"), st.integers(1, 3))  # events
WAIT = st.tuples(st.just("wait"), st.integers(0, 40_000).map(lambda ms: ms / 1000))  # seconds
RESTART = st.tuples(st.just("restart"), st.just(0))
READ = st.tuples(st.just("read"), st.integers(0, 4), st.integers(1, 4))  # how far back a position, limit
# Appends and reads most of the time (as a stream lives), a restart now and then.
OPERATIONS = st.lists(st.one_of(APPEND, APPEND, READ, READ, READ, WAIT, RESTART), max_size=40)
SEEN: Counter = Counter()


def run_model(operations, make_store, lose_state, seen: Counter) -> None:
    """Run the operations on a store (make_store(clock)) and check every read against a model of
    what was kept. lose_state(store, clock) -> store: what a restart or an eviction does to it."""
    clock = Clock()
    h = make_store(clock)
    kept: list[tuple[int, int, str]] = []  # (offset, at in ms, epoch) of every event of the current epoch
    handed: list[Position] = [Position(0, "never-handed")]
    for operation in operations:
        kind = operation[0]
        if kind == "append":
            for _ in range(operation[1]):
                position = h.append("t", [len(kept)], {}, None, size=SIZE, ttl_seconds=TTL)
                if kept and position.epoch != kept[-1][2]:
                    kept = []
                kept.append((position.offset, clock.ms, position.epoch))
                handed.append(position)
        elif kind == "wait":
            clock.advance(operation[1])
        elif kind == "restart":
            h, kept = lose_state(h, clock), []
        else:
            since = handed[max(0, len(handed) - 1 - operation[1])]  # recent positions, as readers have
            answer = h.read("t", since, operation[2], size=SIZE, ttl_seconds=TTL)
            top = answer.position
            if kept and kept[-1][2] != top.epoch:
                kept = []  # a read created the stream of a new epoch (after a restart)
            held = [o for o, at, _ in kept[-SIZE:] if clock.ms - at <= TTL * 1000]
            after = [o for o, _, _ in kept if o > since.offset]
            whole = since.epoch == top.epoch and since.offset <= top.offset and all(o in held for o in after)
            assert answer.recovered == whole, (since, top, kept, held)
            if whole:
                assert [p.offset for p, _ in answer.events] == after[: operation[2]]
                assert all(p.epoch == top.epoch for p, _ in answer.events)
                seen["recovered with events" if answer.events else "recovered, nothing missed"] += 1
            else:
                assert answer.events == ()
                seen["not recovered"] += 1


def assert_reached_every_kind_of_answer(seen: Counter) -> None:
    """The property reached each kind of answer often enough to mean something."""
    assert seen["recovered with events"] >= 50 and seen["not recovered"] >= 50, seen
    assert seen["recovered, nothing missed"] >= 20, seen


@settings(max_examples=500, derandomize=True, database=None, deadline=None)  # the same examples everywhere
@given(OPERATIONS)
def _check_against_the_model(operations):
    run_model(operations, lambda clock: history(clock), lambda store, clock: history(clock), SEEN)


def test_every_answer_is_the_whole_rest_of_the_stream_or_says_it_is_not():
    SEEN.clear()
    _check_against_the_model()
    assert_reached_every_kind_of_answer(SEEN)


def test_the_store_stays_within_its_byte_budget_and_what_it_drops_is_never_recovered():
    from authenticator.core.history import EVENT_OVERHEAD_BYTES

    big = "x" * 10_000
    h = MemoryHistory(clock=Clock(), max_bytes=100_000)
    first = h.append("app.chat.t0", [big], {}, None, size=SIZE, ttl_seconds=TTL)
    for i in range(1, 50):  # a client publishing big events to ever new topics
        h.append(f"app.chat.t{i}", [big], {}, None, size=SIZE, ttl_seconds=TTL)
        assert h.bytes <= 100_000
    assert h.bytes > 100_000 - 2 * (10_000 + EVENT_OVERHEAD_BYTES)  # the budget is used, not wasted
    lost = h.read("app.chat.t0", first, 100, size=SIZE, ttl_seconds=TTL)
    assert lost.recovered is False and lost.position.epoch != first.epoch  # evicted: a new epoch
    # one stream alone over the budget loses its oldest events: a position before them is not recovered
    alone = MemoryHistory(clock=Clock(), max_bytes=25_000)
    positions = [alone.append("app.chat.one", [big], {}, None, size=SIZE, ttl_seconds=TTL) for _ in range(4)]
    assert alone.bytes <= 25_000
    assert alone.read("app.chat.one", positions[0], 100, size=SIZE, ttl_seconds=TTL).recovered is False
    kept = alone.read("app.chat.one", positions[-2], 100, size=SIZE, ttl_seconds=TTL)
    assert kept.recovered is True and [p for p, _ in kept.events] == [positions[-1]]
