"""What presence costs (issue 22), through a real router (the single-worker config, --loglevel warn):
the rate of 1,000 sessions subscribing to a topic the router does not track (no rule grants
presence on it: the component hears the meta events and drops them) against one it tracks (the
memory table, and Redis shared by the routers of a deployment), and the latency of
authenticator.presence at 1,000 members.
A script with a report, never a test:

    .venv/bin/python -m bench.presence_cost [--subscribers 1000] [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task

from tests.support.redis_server import RedisServer
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint
from tests.support.wamp import Inbox, connect

IN_FLIGHT = 100  # logins and subscribes in flight at once


async def _batched(make, n: int) -> list:
    results = []
    for start in range(0, n, IN_FLIGHT):
        batch = [defer.ensureDeferred(make(i)) for i in range(start, min(n, start + IN_FLIGHT))]
        results += await defer.gatherResults(batch, consumeErrors=True)
    return results


async def measure(router: RouterProcess, label: str, subscribers: int, calls: int, rounds: int) -> dict:
    sessions = await _batched(lambda i: connect(router.url, mint(f"{label}{i}", ["user"])), subscribers)
    watcher = sessions[0]
    rates: dict[str, list[float]] = {"untracked": [], "tracked": []}
    try:
        for r in range(rounds):  # alternated, in turns first: the machine is noisy
            order = ("untracked", "tracked") if r % 2 == 0 else ("tracked", "untracked")
            for kind in order:
                topic = f"app.{'public' if kind == 'untracked' else 'chat'}.bench-{label}-{r}"
                start = time.perf_counter()
                await _batched(lambda i, topic=topic: sessions[i].subscribe(Inbox(), topic), subscribers)
                rates[kind].append(subscribers / (time.perf_counter() - start))
        row = {f"{kind} subscribes/s": round(statistics.median(values)) for kind, values in rates.items()}
        row["tracked/untracked"] = round(statistics.median(
            t / u for t, u in zip(rates["tracked"], rates["untracked"], strict=True)), 2)  # fmt: skip
        topic = f"app.chat.bench-{label}-{rounds - 1}"
        while (await watcher.call("authenticator.presence", topic))["sessions"] < subscribers:
            await task.deferLater(reactor, 0.01, lambda: None)
        latencies = []
        for _ in range(calls):
            begin = time.perf_counter()
            answer = await watcher.call("authenticator.presence", topic)
            latencies.append(time.perf_counter() - begin)
        assert answer["users"] == subscribers and len(answer["authids"]) == subscribers, answer["users"]
        row["presence p50 ms"] = round(statistics.median(latencies) * 1000, 2)
        row["presence p99 ms"] = round(statistics.quantiles(latencies, n=100)[98] * 1000, 2)
    finally:
        for session in sessions:
            session.leave()
    return row


def _node(workdir: Path, redis_url: str | None) -> RouterProcess:
    def configure(config):
        if redis_url:
            config["workers"][0]["components"][0]["extra"]["store"] = {"redis_url": redis_url}

    return RouterProcess(workdir, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure, loglevel="warn")


async def run(options) -> None:
    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            for store, url in (("memory", None), ("redis", server.url)):
                node = _node(Path(workdir) / store, url).start()
                try:
                    rows[store] = await measure(node, store, options.subscribers, options.calls, options.rounds)
                finally:
                    node.stop()
        finally:
            server.stop()
    print(f"presence at {options.subscribers} subscribers (one router worker, {IN_FLIGHT} subscribes in flight; "
          f"subscribe rates: median of {options.rounds} alternated rounds)")  # fmt: skip
    names = list(next(iter(rows.values())))
    print(f"{'store':8} " + " ".join(f"{name:>22}" for name in names))
    for store, row in rows.items():
        print(f"{store:8} " + " ".join(f"{row[name]:>22}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    options = parser.parse_args()
    task.react(lambda _reactor: defer.ensureDeferred(run(options)))


if __name__ == "__main__":
    main()
