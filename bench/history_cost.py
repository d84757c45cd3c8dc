"""What event history costs (issue 22): memory per kept event in the memory store, and the time of
an append and of a read of 100 events, in the memory store and in Redis (a local redis-server).
A script with a report, never a test:

    .venv/bin/python -m bench.history_cost [--events 20000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import redis

from authenticator.core.history import MemoryHistory
from authenticator.server.redis_history import RedisHistory
from tests.support.redis_server import RedisServer

# A typical per-user notification: a short text and a small kwargs object.
ARGS = ["Your invoice #40213 is paid: 129.00 EUR"]
KWARGS = {"kind": "invoice", "id": 40213}
SIZE, TTL = 100, 600.0


def memory_per_event(events: int) -> float:
    """Bytes the memory store holds per kept event, over `events` events in events/SIZE topics."""
    history = MemoryHistory(clock=time.time)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(events):
        history.append(f"app.user.u{i // SIZE}.notifications", ARGS, KWARGS, None, size=SIZE, ttl_seconds=TTL)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / events


def timings(store, rounds: int) -> dict:
    """p50 and p99 in µs of an append, and of a read of the 100 events after a position."""
    appends, reads = [], []
    first = store.append("app.chat.bench", ARGS, KWARGS, "alice", size=SIZE, ttl_seconds=TTL)
    for _ in range(SIZE):
        store.append("app.chat.bench", ARGS, KWARGS, "alice", size=SIZE, ttl_seconds=TTL)
    for _ in range(rounds):
        start = time.perf_counter()
        position = store.append("app.chat.bench", ARGS, KWARGS, "alice", size=SIZE, ttl_seconds=TTL)
        appends.append(time.perf_counter() - start)
        since = type(first)(position.offset - SIZE + 1, position.epoch)  # the 100 oldest held: a long absence
        start = time.perf_counter()
        answer = store.read("app.chat.bench", since, SIZE, size=SIZE, ttl_seconds=TTL)
        reads.append(time.perf_counter() - start)
        assert answer.recovered and len(answer.events) == SIZE - 1, answer.recovered
    return {name: (_us(statistics.median(values)), _us(statistics.quantiles(values, n=100)[98]))
            for name, values in (("append", appends), ("read 100", reads))}  # fmt: skip


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2_000)
    options = parser.parse_args()
    print(f"memory store: {memory_per_event(options.events):.0f} bytes per kept event "
          f"({options.events} events of {len(str(ARGS)) + len(str(KWARGS))} characters of payload)")  # fmt: skip
    print(f"{'store':8} {'operation':10} {'p50 µs':>8} {'p99 µs':>8}")
    for name, value in timings(MemoryHistory(clock=time.time), options.rounds).items():
        print(f"{'memory':8} {name:10} {value[0]:8} {value[1]:8}")
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            client = redis.Redis.from_url(server.url)
            for name, value in timings(RedisHistory(client, time.time), options.rounds // 4).items():
                print(f"{'redis':8} {name:10} {value[0]:8} {value[1]:8}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
