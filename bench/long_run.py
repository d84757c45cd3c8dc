"""A long run, as a user would: a backend POSTs one notification every 0.5 s to a user's
notifications topic (a history topic), and a Python kit client, a program of its own, subscribes
with recover=True. Meanwhile the router restarts once and the subscriber's connection is really
cut twice while the router stays up (a TCP relay between them is stopped for a few seconds). A
report, not a test (tests/router/test_python_kit_long_run.py runs a short one):

- Redis store: every event received exactly once and in order, the missed ones recovered;
- memory store: what the restart lost is announced by `recovered: False`, never silent.

    .venv/bin/python -m bench.long_run                     # ~2 min, Redis store, the asyncio kit
    .venv/bin/python -m bench.long_run --store memory --kit twisted --seconds 60

Needs redis-server (Debian's package) and the router's packages (make test installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.router import REPO, RouterProcess, wait_for
from tests.support.tcp_relay import TcpRelay
from tests.support.tokens import TEST_SECRET, mint, unique

INTERVAL = 0.5  # seconds between notifications
CUT_SECONDS = 4.0  # how long each cut of the subscriber's connection lasts

SUBSCRIBER = """
import json, os, sys, time
import jwt

kit, url, authid, topic, max_retry_delay = sys.argv[1:6]
from authenticator.kit.common import Backoff
backoff = Backoff(maximum=float(max_retry_delay)) if max_retry_delay else Backoff()
if kit == "asyncio":
    import asyncio
    from authenticator.kit.asyncio import Client
else:
    from twisted.internet import defer, task
    from authenticator.kit.twisted import Client

def say(**fields):
    print(json.dumps({"at": time.time(), **fields}), flush=True)

def get_token():
    now = int(time.time())
    return jwt.encode({"sub": authid, "roles": ["user"], "iat": now, "exp": now + 600},
                      os.environ["JWT_SECRET"], algorithm="HS256")

def on_event(number, details):
    say(event=number, missed=details.missed, position=details.position.as_wire() if details.position else None)

def on_recovered(recovery):
    say(recovered=recovery.recovered, missed=recovery.missed, cause=recovery.cause, reason=recovery.reason)

def make():
    client = Client(url, "realm1", get_token, on_state=lambda state, c: say(state=state, reason=c.reason),
                    backoff=backoff)
    client.subscribe(topic, on_event, recover=True, on_recovered=on_recovered, details_arg="details")
    return client

if kit == "asyncio":
    async def main():
        await make().start()
    asyncio.run(main())
else:
    task.react(lambda reactor: make().start())
"""


@dataclass
class Report:
    store: str
    kit: str
    seconds: float
    published: int = 0
    received: list[int] = field(default_factory=list)
    missed: int = 0  # events delivered from the history
    recoveries: list[dict] = field(default_factory=list)
    cuts: list[tuple[float, float]] = field(default_factory=list)  # (start, end), seconds into the run
    restart: tuple[float, float] | None = None
    closed: list[int] = field(default_factory=list)  # connections each cut closed
    joins: int = 0
    unannounced_gaps: list[tuple[int, int]] = field(default_factory=list)  # (last before, first after)

    @property
    def exactly_once_in_order(self) -> bool:
        return self.received == list(range(self.published))

    @property
    def losses_announced(self) -> int:
        return sum(1 for r in self.recoveries if not r["recovered"])

    def lines(self) -> list[str]:
        duplicates = len(self.received) - len(set(self.received))
        return [
            f"long run: {self.kit} kit, {self.store} store, {self.seconds:.0f} s, one notification every {INTERVAL} s",
            "  cuts of the subscriber's connection (s into the run): "
            + ", ".join(f"{a:.1f}-{b:.1f}" for a, b in self.cuts),
            f"  router restart: {self.restart[0]:.1f}-{self.restart[1]:.1f} s" if self.restart else "  no restart",
            f"  published {self.published}, received {len(self.received)} ({len(set(self.received))} distinct, "
            f"{duplicates} duplicates), {self.missed} of them recovered from the history; {self.joins} sessions",
            f"  recoveries: {[(r['cause'], r['recovered'], r['missed'], r['reason']) for r in self.recoveries]}",
            f"  exactly once and in order: {self.exactly_once_in_order}; losses announced: {self.losses_announced}; "
            f"gaps without recovered False: {self.unannounced_gaps or 'none'}",
        ]


def run(seconds: float = 120.0, *, store: str = "redis", kit: str = "asyncio", workdir: Path | None = None,
        cuts: int = 2, restart: bool = True, log=print, max_retry_delay: float | None = None) -> Report:  # fmt: skip
    """Run the scenario; the report. The restart comes at half time, the cuts at 1/4 and 3/4 (with
    one cut: at 3/4). `max_retry_delay`: the kit's backoff cap (default: the kit's own, 10 s)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="long-run-"))
    redis_server = None
    if store == "redis":
        from tests.support.redis_server import RedisServer

        (workdir / "redis").mkdir(exist_ok=True)
        redis_server = RedisServer(workdir / "redis").start()

    def configure(config):
        if redis_server is not None:
            config["workers"][0]["components"][0]["extra"]["store"] = {"redis_url": redis_server.url}

    (workdir / "node").mkdir(exist_ok=True)
    router = RouterProcess(workdir / "node", env={"JWT_SECRET": TEST_SECRET}, edit_config=configure,
                           loglevel="warn").start()  # fmt: skip
    relay = TcpRelay(router.port).start()
    authid = unique("reader")
    topic = f"app.user.{authid}.notifications"
    report = Report(store, kit, seconds)
    output = workdir / "subscriber.jsonl"
    script = workdir / "subscriber.py"
    script.write_text(SUBSCRIBER)
    env = {**os.environ, "JWT_SECRET": TEST_SECRET, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with output.open("wb") as sink:
        subscriber = subprocess.Popen([sys.executable, str(script), kit, relay.url(), authid, topic,
                                       str(max_retry_delay or "")], stdout=sink,
                                      stderr=(workdir / "subscriber.err").open("wb"), env=env)  # fmt: skip
    lines = lambda: [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]  # noqa: E731
    publishing = Publisher(router.port, topic)
    try:
        wait_for(lambda: any(line.get("state") == "connected" for line in lines()), 30, "the subscriber to join")
        start = time.monotonic()
        at = lambda fraction: start + seconds * fraction  # noqa: E731
        events = [(at(0.75), "cut")] + ([(at(0.25), "cut")] if cuts >= 2 else [])
        if restart:
            events.append((at(0.5), "restart"))
        thread = threading.Thread(target=publishing.run, args=(start + seconds,), daemon=True)
        thread.start()
        joined = lambda: sum(1 for line in lines() if line.get("state") == "connected")  # noqa: E731
        for done, (when, what) in enumerate(sorted(events)):
            time.sleep(max(0.0, when - time.monotonic()))
            # Each disruption hits a joined subscriber (after a slow restart it may still be on its way).
            wait_for(lambda done=done: joined() > done, 30, "the subscriber to be joined again")
            begun = time.monotonic() - start
            if what == "cut":
                closed = relay.stop()
                report.closed.append(closed)
                log(f"{begun:5.1f} s: connection cut ({closed} closed), for {CUT_SECONDS} s")
                time.sleep(CUT_SECONDS)
                relay.start()
                report.cuts.append((begun, time.monotonic() - start))
            else:
                log(f"{begun:5.1f} s: router restart")
                router.restart()
                report.restart = (begun, time.monotonic() - start)
                log(f"{time.monotonic() - start:5.1f} s: router ready")
        thread.join()
        report.published = publishing.published
        log(f"published {report.published}; waiting for the subscriber to catch up")

        def caught_up():
            got = [line["event"] for line in lines() if "event" in line]
            return got and got[-1] == report.published - 1

        try:
            wait_for(caught_up, 30, "the last event at the subscriber")
        except TimeoutError:
            log("the subscriber did not receive the last event within 30 s")
    finally:
        subscriber.terminate()
        subscriber.wait(timeout=10)
        relay.stop()
        router.stop()
        if redis_server is not None:
            redis_server.stop()
    seen = lines()
    report.received = [line["event"] for line in seen if "event" in line]
    report.missed = sum(1 for line in seen if "event" in line and line["missed"])
    report.recoveries = [line for line in seen if "recovered" in line]
    report.joins = sum(1 for line in seen if line.get("state") == "connected")
    report.unannounced_gaps = unannounced_gaps(seen)
    return report


def unannounced_gaps(seen: list[dict]) -> list[tuple[int, int]]:
    """Places where the numbers do not go on by one (a gap, a duplicate, a step back) with no
    recovered False since the previous event."""
    gaps, previous, announced = [], -1, False
    for line in seen:
        if "recovered" in line and not line["recovered"]:
            announced = True
        elif "event" in line:
            if line["event"] != previous + 1 and not announced:
                gaps.append((previous, line["event"]))
            previous, announced = line["event"], False
    return gaps


class Publisher:
    """The backend: POST /publish with an Idempotency-Key, one notification every INTERVAL; a
    request that fails (the router restarting) is sent again with the same key until answered."""

    def __init__(self, port: int, topic: str) -> None:
        self.url = f"http://127.0.0.1:{port}/publish"
        self.topic = topic
        self.token = mint(unique("backend"), ["backend"], ttl=3600)
        self.published = 0
        self.retries = 0

    def run(self, until: float) -> None:
        next_at = time.monotonic()
        while time.monotonic() < until:
            self.send(self.published)
            self.published += 1
            next_at += INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))

    def send(self, number: int) -> None:
        body = json.dumps({"topic": self.topic, "args": [number]}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}",
                   "Idempotency-Key": uuid.uuid4().hex}  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - http://127.0.0.1
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"notification {number} not accepted within 60 s")
            self.retries += 1
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--store", choices=("redis", "memory"), default="redis")
    parser.add_argument("--kit", choices=("asyncio", "twisted"), default="asyncio")
    args = parser.parse_args()
    report = run(args.seconds, store=args.store, kit=args.kit)
    print("\n".join(report.lines()))
    ok = report.exactly_once_in_order if args.store == "redis" else not report.unannounced_gaps
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
