"""make bench: authentication and authorization cost, side by side with the alternatives.

A script with a report, never a test. Systems run alternated round by round (A B C A B C ...) so
that ratios hold on a noisy machine; servers are pinned to core 0, the node load generator to
core 1, and the generator's own CPU use is reported. Writes bench/results/latest.json, the
results sections of docs/benchmarks.md and README.md, and docs/benchmarks.png.

    .venv/bin/python -m bench.run [--rounds 5] [--sessions 1000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench import report
from bench.systems import HTTP_TOPIC, NODE, http_publish_node, make_systems
from bench.verify_cost import verification_cost
from tests.support.router import REPO, wait_for
from tests.support.tokens import mint

LOAD_CPU = "1"
RESULTS = REPO / "bench" / "results"


def run_load(job: dict, secret: str) -> dict:
    completed = subprocess.run(
        ["taskset", "-c", LOAD_CPU, NODE, str(REPO / "bench" / "load.js"), json.dumps(job)],
        env={**os.environ, "JWT_SECRET": secret}, capture_output=True, text=True,
        timeout=job.get("timeout_s", 120) + 10,
    )  # fmt: skip
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed ({job['mode']}): {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def sessions_benchmark(systems, rounds: int, count: int, secret: str) -> dict:
    samples: dict[str, list[dict]] = {s.name: [] for s in systems}
    for s in systems:  # warm-up: imports, caches, JIT-free but first-connection costs
        run_load({"mode": "sessions", "target": s.target, "count": 100, "inflight": 50}, secret)
    for r in range(rounds):
        for s in systems:
            pids = s.server_pids()
            before = cpu_seconds(pids)
            # Crossbar 26's proxies admit ~50 sessions/s (docs/scaling.md): fewer per round keeps the run short.
            n = max(50, count // 5) if getattr(s, "proxies", 0) else count
            job = {"mode": "sessions", "target": s.target, "count": n, "inflight": 50, "timeout_s": 300}
            result = run_load(job, secret)
            result["server_cpu_percent"] = 100 * (cpu_seconds(pids) - before) / result["seconds"]
            samples[s.name].append(result)
            print(f"  sessions round {r + 1}/{rounds} {s.name:9s} {result['rate']:7.0f}/s "
                  f"p50 {result['p50_ms']:6.1f} ms p99 {result['p99_ms']:6.1f} ms "
                  f"server CPU {result['server_cpu_percent']:3.0f} % generator CPU "
                  f"{result['generator_cpu_percent']:3.0f} % errors {result['errors']} {result['first_error'] or ''}"
                  + (f" failed closes {result['close_errors']} {result['first_close_error']}"
                     if result.get("close_errors") else ""),
                  flush=True)  # fmt: skip
    return samples


FANOUT_TOPICS = {"role-wide rule": "app.chat.bench", "per-user rule": "app.user.alice.status"}


def fanout_benchmark(systems, rounds: int, events: int, secret: str) -> dict:
    samples: dict[str, dict[str, list[dict]]] = {s.name: {t: [] for t in FANOUT_TOPICS} for s in systems}
    for r in range(rounds):
        for kind, topic in FANOUT_TOPICS.items():
            for s in systems:
                job = {"mode": "fanout", "target": s.target, "subscribers": 100, "events": events, "window": 20,
                       "topic": topic}  # fmt: skip
                pids = s.server_pids()
                before = cpu_seconds(pids)
                result = run_load(job, secret)
                result["server_cpu_percent"] = 100 * (cpu_seconds(pids) - before) / result["seconds"]
                samples[s.name][kind].append(result)
                print(f"  fan-out round {r + 1}/{rounds} {s.name:9s} {kind:20s} {result['rate']:8.0f} events/s "
                      f"server CPU {result['server_cpu_percent']:3.0f} % generator CPU "
                      f"{result['generator_cpu_percent']:3.0f} %", flush=True)  # fmt: skip
    return samples


HTTP_ENDPOINTS = {"publish": "crossbar-jwt POST /publish (Bearer JWT, policy)", "bridge": "Crossbar HTTP bridge"}


def http_benchmark(rounds: int, requests: int, secret: str) -> dict:
    """HTTP publishes/s, keep-alive, 20 in flight, one WAMP subscriber: our /publish and Crossbar's
    bridge publisher in the same router worker, alternated round by round."""
    node = http_publish_node(secret)
    samples: dict[str, list[dict]] = {name: [] for name in HTTP_ENDPOINTS}
    try:
        token = mint("billing", ["backend"], ttl=3600, secret=secret)
        for r in range(-1, rounds):  # round -1: warm-up
            for name in HTTP_ENDPOINTS:
                job = {"url": f"http://127.0.0.1:{node.port}/{name}", "token": token, "ws": node.url,
                       "topic": HTTP_TOPIC, "requests": requests if r >= 0 else 500, "inflight": 20}  # fmt: skip
                pids = node.node_pids()
                before = cpu_seconds(pids)
                completed = subprocess.run(
                    ["taskset", "-c", LOAD_CPU, sys.executable, "-m", "bench.http_load", json.dumps(job)],
                    capture_output=True, text=True, timeout=300, cwd=REPO,
                )  # fmt: skip
                if completed.returncode != 0:
                    raise RuntimeError(f"HTTP load generator failed ({name}): {completed.stderr[-2000:]}")
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                result["server_cpu_percent"] = 100 * (cpu_seconds(pids) - before) / result["seconds"]
                if r < 0:
                    continue
                samples[name].append(result)
                print(f"  http round {r + 1}/{rounds} {name:8s} {result['rate']:7.0f}/s p50 {result['p50_ms']:5.1f} ms "
                      f"p99 {result['p99_ms']:5.1f} ms server CPU {result['server_cpu_percent']:3.0f} % errors "
                      f"{result['errors']} events {result['events']}/{result['requests']}", flush=True)  # fmt: skip
    finally:
        node.stop()
    return samples


def _hold_idle(target: dict, count: int, secret: str) -> tuple[subprocess.Popen, dict]:
    """A generator holding `count` idle sessions open until its stdin closes."""
    job = {"mode": "idle", "target": target, "count": count, "inflight": 50, "timeout_s": 600}
    generator = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, NODE, str(REPO / "bench" / "load.js"), json.dumps(job)],
        env={**os.environ, "JWT_SECRET": secret}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = generator.stdout.readline()
    if not line:
        raise RuntimeError(f"the idle-session generator exited with {generator.wait()} before its sessions were open")
    return generator, json.loads(line)


def _every_worker(system) -> list[int]:
    """The node is ready when one worker answers on its port: a second proxy worker may still be
    starting (measured without it, 2 proxies looked cheaper per session than 1, and the first clients
    it took were closed with 1002)."""
    expected = 1 + getattr(system, "proxies", 0)

    def started() -> list[int] | None:
        pids = system.session_pids()
        return pids if len(pids) >= expected else None

    return wait_for(started, 60, f"{expected} workers of {system.name}")


def memory_benchmark(make, count: int, secret: str) -> dict:
    """RSS growth of the server processes per idle authenticated session, each system freshly started.

    Two batches of `count` sessions are held open one after the other; the figure is the second
    batch's growth per session (the slope), so one-time growth -- pools, caches and heaps sized on
    first use -- is not divided among the sessions. The first batch's figure is kept beside it.
    """
    figures = {}
    for s in make():
        s.start()
        generators = []
        try:
            pids = _every_worker(s)

            def rss(pids=pids) -> int:
                return sum(psutil.Process(p).memory_info().rss for p in pids)

            run_load({"mode": "sessions", "target": s.target, "count": 50, "inflight": 50}, secret)  # warm-up
            readings, ready = [rss()], []
            for _ in range(2):
                generator, answer = _hold_idle(s.target, count, secret)
                generators.append(generator)
                ready.append(answer)
                time.sleep(1.0)  # let the last WELCOMEs' buffers settle; RSS is read once, not a timed wait
                readings.append(rss())
            held = [a["ready"] for a in ready]
            figures[s.name] = {
                "sessions": sum(held), "errors": sum(a["errors"] for a in ready),
                "first_error": next((a["first_error"] for a in ready if a["first_error"]), None),
                "kib_per_session": (readings[2] - readings[1]) / 1024 / max(1, held[1]),
                "kib_per_session_first": (readings[1] - readings[0]) / 1024 / max(1, held[0]),
                "rss_mib": readings[2] / 2**20, "processes": len(pids),
            }  # fmt: skip
            f = figures[s.name]
            print(f"  memory {s.name:10s} {f['kib_per_session']:6.1f} KiB/session (second {held[1]}; first "
                  f"{held[0]}: {f['kib_per_session_first']:.1f}) RSS {f['rss_mib']:.0f} MiB errors {f['errors']} "
                  f"{f['first_error'] or ''}",
                  flush=True)  # fmt: skip
        finally:
            for generator in generators:
                generator.stdin.close()
            for generator in generators:
                generator.wait(timeout=120)
            s.stop()
    return figures


@contextlib.contextmanager
def running(systems: list):
    """All systems started (and stopped again, whatever happens): rounds alternate between them."""
    started = []
    try:
        for system in systems:
            started.append(system.start())
        yield started
    finally:
        for system in started:
            system.stop()


def machine() -> dict:
    return {
        "cpu": platform.processor() or _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "node": subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip(),
        "kernel": platform.release(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=1000, help="sessions per round and system")
    parser.add_argument("--events", type=int, default=3000, help="publishes per fan-out round (x100 deliveries)")
    parser.add_argument("--idle", type=int, default=1000, help="idle sessions for the memory figure")
    parser.add_argument("--requests", type=int, default=5000, help="HTTP publishes per round and endpoint")
    parser.add_argument("--quick", action="store_true", help="2 rounds, smaller counts: a smoke run, not figures")
    parts = ["verify", "sessions", "fanout", "http", "memory"]
    parser.add_argument("--only", choices=parts, help="one part, nothing written")
    parser.add_argument("--systems", help="comma-separated system names, e.g. jwt,minimal (with --only)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ and bench/results/ alone")
    parser.add_argument("--report-only", action="store_true", help="rewrite the docs from bench/results/latest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.sessions, args.events, args.idle, args.requests = 2, 200, 200, 200, 1000
    if args.report_only:
        results = json.loads((RESULTS / "latest.json").read_text())
        summary = report.summarize(results)
        report.write_docs(summary, results, REPO / "docs" / "benchmarks.md", REPO / "docs" / "benchmarks.png",
                          REPO / "README.md")  # fmt: skip
        print(report.text_table(summary))
        return 0
    if args.only:
        args.no_write = True
    if (os.cpu_count() or 1) < 2:
        print("make bench needs 2 cores: the servers run on core 0, the load generator on core 1", file=sys.stderr)
        return 2
    secret = "bench-" + secrets.token_urlsafe(32)
    started = time.monotonic()
    results: dict = {"machine": machine(), "command": "make bench", "rounds": args.rounds}

    wanted = lambda part: args.only in (None, part)  # noqa: E731
    names = set(args.systems.split(",")) if args.systems else None
    if names and not args.only:
        parser.error("--systems needs --only: a full run measures every system")

    def chosen(systems: list) -> list:
        return [s for s in systems if names is None or s.name in names]

    if wanted("verify"):
        print("verification cost per token (pure core)", flush=True)
        results["verify"] = verification_cost(rounds=args.rounds)
    if wanted("sessions"):
        print("session establishment", flush=True)
        with running(chosen(make_systems(secret, proxies=True, minimal_patched=names is not None))) as systems:
            results["sessions"] = sessions_benchmark(systems, args.rounds, args.sessions, secret)
    if wanted("fanout"):
        print("fan-out: 1 publisher, 100 subscribers", flush=True)
        fanout_systems = [s for s in make_systems(secret, fanout=True) if s.name not in ("stock", "minimal")]
        with running(chosen(fanout_systems)) as systems:
            results["fanout"] = fanout_benchmark(systems, args.rounds, args.events, secret)
    if wanted("http"):
        print("HTTP publish: keep-alive, 20 in flight, 1 subscriber", flush=True)
        results["http"] = http_benchmark(args.rounds, args.requests, secret)
    if wanted("memory"):
        print(f"memory per idle session (2 x {args.idle} sessions held, the second batch's growth)", flush=True)
        results["memory"] = memory_benchmark(lambda: make_systems(secret, proxies=True), args.idle, secret)
    results["seconds"] = time.monotonic() - started
    if args.only:
        return 0

    summary = report.summarize(results)
    print(report.text_table(summary))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=1))
        report.write_docs(summary, results, REPO / "docs" / "benchmarks.md", REPO / "docs" / "benchmarks.png",
                          REPO / "README.md")  # fmt: skip
        print("wrote bench/results/latest.json, docs/benchmarks.md and README.md (results), docs/benchmarks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
