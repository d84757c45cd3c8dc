"""Concurrency: many idle authenticated sessions on ONE router worker (issue 23, item 4).

A script with a report, never a test. The shipped config (`--loglevel warn`, as `make run`), its
router pinned to core 0; N sessions, each its own user with its own token, each subscribed to its
own notifications topic (app.user.{authid}.notifications), held open by several lean generator
processes (bench/idle_clients.js) pinned to core 1, each connecting from its own loopback address
(127.0.0.2, .3, ...: one address has ~28,000 ephemeral ports). Then a backend publishes one
notification per user through `POST /publish` (batches of 100) and every session must receive its
own, once.

    .venv/bin/python -m bench.idle_sessions [--sessions 20000] [--generators 4]

With an open-file limit below sessions + 50 it measures what fits, and says so.

Reports: sessions established, time to establish, RSS of the router worker per session, open files,
events delivered / lost / to the wrong user / duplicated, time to deliver, the router worker's CPU
in each phase, the generators' CPU. The router needs one open file per session: the script raises
its soft limit to the hard limit (as `make run` does) and, as root, the hard limit too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench.systems import NODE, SERVER_CPU, shipped_loglevel
from tests.support.router import REPO, RouterProcess
from tests.support.tokens import mint

LOAD_CPU = "1"
BATCH = 100  # the shipped /publish path's max_batch
# The router worker's own descriptors (measured: 14 -- the listening socket, SQLite, pipes to the
# controller, epoll) and the backend's /publish connections, with room to spare.
FILES_MARGIN = 50


def raise_open_files(needed: int) -> tuple[int, int]:
    """Soft limit to the hard limit (what `make run` does), and the hard limit to `needed` when we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))  # root only
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def worker_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " / ".join(line.split()[3:5])
    return "?"


class Phase:
    """CPU seconds of some processes over a wall-clock interval."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu0, self.t0 = self._cpu(), time.monotonic()

    def _cpu(self) -> float:
        return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in self.pids)

    def end(self) -> dict:
        seconds = time.monotonic() - self.t0
        cpu = self._cpu() - self.cpu0
        return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "cpu_percent": round(100 * cpu / seconds)}


def publish_all(port: int, users: list[str], token: str, connections: int = 4) -> dict:
    """One notification per user, POST /publish batches of BATCH on keep-alive connections."""
    batches = [users[i : i + BATCH] for i in range(0, len(users), BATCH)]

    def post(chunk_of_batches: list[list[str]]) -> tuple[int, int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        published = failed = 0
        for batch in chunk_of_batches:
            body = json.dumps([{"topic": f"app.user.{u}.notifications", "args": [u, "your report is ready"]}
                               for u in batch])  # fmt: skip
            conn.request("POST", "/publish", body, {"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            answer = response.read()
            if response.status == 200:
                results = json.loads(answer)
                ok = sum(1 for r in results if isinstance(r, dict) and "id" in r) if isinstance(results, list) else 0
                published, failed = published + ok, failed + len(batch) - ok
            else:
                failed += len(batch)
        conn.close()
        return published, failed

    chunks = [batches[k::connections] for k in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        outcomes = list(pool.map(post, chunks))
    return {"published": sum(o[0] for o in outcomes), "failed": sum(o[1] for o in outcomes)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--generators", type=int, default=4, help="generator processes, each from its own 127.0.0.x")
    parser.add_argument("--inflight", type=int, default=48, help="logins in flight, all generators together")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="how long the router's idle CPU is measured")
    parser.add_argument("--deliver-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("needs 2 cores: the router runs on core 0, the generators on core 1", file=sys.stderr)
        return 2

    per_generator = -(-args.sessions // args.generators)
    soft, hard = raise_open_files(args.sessions + FILES_MARGIN)
    print(f"open files: soft {soft}, hard {hard} (needed: {args.sessions} sessions + {FILES_MARGIN})", flush=True)
    capped = soft < args.sessions + FILES_MARGIN
    if capped:  # what fits, said loudly: the figure is then this machine's limit, not the router's
        print(f"the open-file limit {soft} is below {args.sessions + FILES_MARGIN}: measuring "
              f"{soft - FILES_MARGIN} sessions; raise the hard limit for {args.sessions} (as root: ulimit -Hn; "
              "a systemd unit: LimitNOFILE=)", flush=True)  # fmt: skip
        args.sessions = soft - FILES_MARGIN
        per_generator = -(-args.sessions // args.generators)

    secret = "bench-" + os.urandom(24).hex()
    node = RouterProcess(Path(tempfile.mkdtemp(prefix="bench-idle-")), env={"JWT_SECRET": secret},
                         loglevel=shipped_loglevel(), cpus=SERVER_CPU).start()  # fmt: skip
    generators: list[subprocess.Popen] = []
    report: dict = {"sessions_requested": args.sessions, "generators": args.generators, "open_files_limit": soft,
                    "capped_by_open_files": capped}  # fmt: skip
    try:
        (worker,) = node.worker_pids()
        report["worker_open_files_limit"] = worker_limit(worker)
        rss = lambda: psutil.Process(worker).memory_info().rss  # noqa: E731
        rss_before = rss()
        users: list[str] = []
        establish = Phase([worker])
        for k in range(args.generators):
            first = k * per_generator
            count = min(per_generator, args.sessions - first)
            users += [f"idle{i}" for i in range(first, first + count)]
            job = {"url": node.url, "prefix": "idle", "first": first, "count": count, "source": f"127.0.0.{2 + k}",
                   "inflight": max(1, args.inflight // args.generators), "ttl_s": 3600}  # fmt: skip
            generators.append(subprocess.Popen(
                ["taskset", "-c", LOAD_CPU, NODE, str(REPO / "bench" / "idle_clients.js"), json.dumps(job)],
                env={**os.environ, "JWT_SECRET": secret}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ))  # fmt: skip
        ready = []
        for g in generators:
            line = g.stdout.readline()
            if not line:
                raise RuntimeError(f"a generator exited with {g.wait()} before its sessions were open")
            ready.append(json.loads(line))
        report["establish"] = establish.end()
        established = sum(r["ready"] for r in ready)
        report["established"] = established
        report["login_errors"] = sum(r["errors"] for r in ready)
        report["first_login_error"] = next((r["first_error"] for r in ready if r["first_error"]), None)
        report["establish"]["sessions_per_second"] = round(established / report["establish"]["seconds"])
        report["generator_cpu_seconds_establish"] = round(sum(r["cpu_seconds"] for r in ready), 2)
        print(f"established {established} of {args.sessions} in {report['establish']['seconds']} s "
              f"({report['establish']['sessions_per_second']}/s), router CPU {report['establish']['cpu_percent']} %, "
              f"errors {report['login_errors']} {report['first_login_error'] or ''}", flush=True)  # fmt: skip

        idle = Phase([worker])
        time.sleep(args.idle_seconds)  # a measured interval of idleness, not a wait for something
        report["idle"] = idle.end()
        rss_held = rss()
        report["worker_rss_mib_before"] = round(rss_before / 2**20, 1)
        report["worker_rss_mib_held"] = round(rss_held / 2**20, 1)
        report["kib_per_session"] = round((rss_held - rss_before) / 1024 / max(1, established), 1)
        report["worker_open_files"] = psutil.Process(worker).num_fds()
        print(f"held: router worker RSS {report['worker_rss_mib_before']} -> {report['worker_rss_mib_held']} MiB "
              f"({report['kib_per_session']} KiB/session), {report['worker_open_files']} open files; idle CPU "
              f"{report['idle']['cpu_percent']} %", flush=True)  # fmt: skip

        token = mint("idle-backend", ["backend"], ttl=3600, secret=secret)
        deliver = Phase([worker])
        started_ms = time.time() * 1000
        report["publish"] = publish_all(node.port, users, token)
        report["publish"]["seconds"] = round(time.time() - started_ms / 1000, 2)
        deadline = time.monotonic() + args.deliver_timeout
        while True:
            answers = []
            for g in generators:
                g.stdin.write("report\n")
                g.stdin.flush()
                answers.append(json.loads(g.stdout.readline()))
            with_event = sum(a["with_event"] for a in answers)
            if with_event >= established or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report["deliver"] = deliver.end()
        last = max((a["last_event_ms"] or 0) for a in answers)
        report["deliver"]["seconds_to_last_event"] = round((last - started_ms) / 1000, 2) if last else None
        report["delivered"] = with_event
        report["lost"] = established - with_event
        report["wrong_user"] = sum(a["wrong"] for a in answers)
        report["duplicates"] = sum(a["duplicates"] for a in answers)
        report["dropped_sessions"] = sum(a["dropped"] for a in answers)
        report["first_drop"] = next((a["first_drop"] for a in answers if a["first_drop"]), None)
        report["generator_cpu_seconds"] = round(sum(a["cpu_seconds"] for a in answers), 2)
        report["worker_rss_mib_after_delivery"] = round(rss() / 2**20, 1)
        print(f"published {report['publish']['published']} ({report['publish']['failed']} failed) in "
              f"{report['publish']['seconds']} s; delivered {report['delivered']}, lost {report['lost']}, "
              f"to the wrong user {report['wrong_user']}, duplicated {report['duplicates']}, sessions dropped "
              f"{report['dropped_sessions']}; last event {report['deliver']['seconds_to_last_event']} s after the "
              f"first POST; router CPU {report['deliver']['cpu_percent']} %", flush=True)  # fmt: skip
    finally:
        for g in generators:
            if g.stdin and not g.stdin.closed:
                g.stdin.close()
        for g in generators:
            try:
                g.wait(timeout=30)
            except subprocess.TimeoutExpired:
                g.kill()
        node.stop()
    print(json.dumps(report, indent=1))
    return 0 if report.get("lost") == 0 and report.get("established") == args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
