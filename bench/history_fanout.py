"""What recovery costs through the real router (issue 22; docs/recovery.md, docs/benchmarks.md):

- fan-out to 100 subscribers of one topic, history on (the shipped policy keeps `app.chat.`) vs
  off (the same policy without `history`), and with the Redis store (every append a round trip);
- the latency of `authenticator.history` answering 100 events (p50, p99), memory and Redis.

A script with a report, never a test. Systems alternate round by round; servers on core 0, the
load generator on core 1 (bench/run.py's rules).

    .venv/bin/python -m bench.history_fanout [--rounds 5] [--events 2000] [--calls 300]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from bench.run import cpu_seconds, run_load
from bench.systems import CrossbarSystem, _router
from tests.support.redis_server import RedisServer

TOPIC = "app.chat.bench"
JWT_AUTH = {"type": "jwt", "sub": "alice", "roles": ["user"]}


def _without_history(config: dict) -> None:
    for role in _router(config)["components"][0]["extra"]["policy"]["roles"]:
        for rule in role["rules"]:
            rule.pop("history", None)


def _with_redis(url: str):
    def edit(config: dict) -> None:
        _router(config)["components"][0]["extra"]["store"] = {"redis_url": url}

    return edit


def fanout(systems, rounds: int, events: int, secret: str) -> dict:
    samples = {s.name: [] for s in systems}
    for r in range(rounds):
        for s in systems:
            job = {"mode": "fanout", "target": s.target, "subscribers": 100, "events": events, "window": 20,
                   "topic": TOPIC}  # fmt: skip
            before = cpu_seconds(s.server_pids())
            result = run_load(job, secret)
            result["server_cpu_percent"] = 100 * (cpu_seconds(s.server_pids()) - before) / result["seconds"]
            samples[s.name].append(result)
            print(f"  round {r + 1}/{rounds} {s.name:14s} {result['rate']:8.0f} events/s "
                  f"server CPU {result['server_cpu_percent']:3.0f} %", flush=True)  # fmt: skip
    return samples


def history_latency(urls: dict[str, str], calls: int, secret: str) -> dict:
    """Per system: p50/p99 (ms) of authenticator.history answering 100 events, one call at a time."""
    from twisted.internet import defer, task

    from tests.support.tokens import mint
    from tests.support.wamp import connect

    results = {}

    async def measure(_reactor):
        for name, url in urls.items():
            results[name] = await measure_one(url)

    async def measure_one(url):
        timings: list[float] = []
        client = await connect(url, mint("alice", ["user"], secret=secret))
        topic = f"{TOPIC}.latency{secrets.token_hex(3)}"
        before = (await client.call("authenticator.history", topic))["position"]
        from autobahn.wamp.types import PublishOptions

        for i in range(100):
            await client.publish(topic, i, {"text": "x" * 100}, options=PublishOptions(acknowledge=True))
        for _ in range(calls):
            started = time.perf_counter()
            answer = await client.call("authenticator.history", topic, since=before)
            timings.append((time.perf_counter() - started) * 1000)
            assert answer["recovered"] and len(answer["events"]) == 100, answer["recovered"]
        client.leave()
        timings.sort()
        return {
            "p50_ms": round(statistics.median(timings), 2),
            "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
        }

    try:
        task.react(lambda reactor: defer.ensureDeferred(measure(reactor)))
    except SystemExit:
        pass
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    secret = secrets.token_urlsafe(48)
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
    systems = [
        CrossbarSystem("history-off", None, None, JWT_AUTH, secret, edit_extra=_without_history),
        CrossbarSystem("history-memory", None, None, JWT_AUTH, secret),
        CrossbarSystem("history-redis", None, None, JWT_AUTH, secret, edit_extra=_with_redis(redis.url)),
    ]
    try:
        for s in systems:
            s.start()
        for s in systems:  # warm-up
            run_load({"mode": "fanout", "target": s.target, "subscribers": 100, "events": 200, "window": 20,
                      "topic": TOPIC}, secret)  # fmt: skip
        samples = fanout(systems, args.rounds, args.events, secret)
        print("fan-out to 100 subscribers, events/s (median of rounds), server CPU %:")
        off = statistics.median(r["rate"] for r in samples["history-off"])
        for name, results in samples.items():
            rate = statistics.median(r["rate"] for r in results)
            cpu = statistics.median(r["server_cpu_percent"] for r in results)
            # server CPU per delivered event: less sensitive than the rate to what else the machine runs
            per_event = statistics.median(r["server_cpu_percent"] / 100 / r["rate"] * 1e6 for r in results)
            print(f"  {name:14s} {rate:8.0f} events/s  ({100 * (rate / off - 1):+5.1f} % vs off)  "
                  f"server CPU {cpu:3.0f} %, {per_event:5.1f} µs per delivered event")  # fmt: skip
        urls = {s.name: s.node.url for s in systems[1:]}
        for name, latency in history_latency(urls, args.calls, secret).items():
            print(f"authenticator.history answering 100 events, {name}: p50 {latency['p50_ms']} ms, "
                  f"p99 {latency['p99_ms']} ms")  # fmt: skip
    finally:
        for s in systems:
            s.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
