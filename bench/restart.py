"""A router restart under thousands of JS-kit clients (issue 23, item 5). A script with a report,
never a test.

The shipped router (.crossbar/config.json, `make run`'s log level) runs pinned to core 0;
`--generators` node processes on core 1 (bench/restart_clients.mjs) hold `--clients` clients of
the JavaScript kit, each minting a fresh token in getToken(). Once all joined, the router is
stopped (SIGINT) and started again on the same port; the clients reconnect with the kit's backoff.
Reported: how long until every client joined again (from the stop and from the router being ready),
the attempts that were wasted (connects refused or failed while the router was down or starting,
logins that did not end in a session, by reason), connect attempts and logins per second at the
peak, and the CPU of the router (controller and workers, psutil) and of the generators meanwhile.

    .venv/bin/python -m bench.restart [--clients 5000] [--generators 2] [--kit '{"maxRetryDelay": 1.5}']

The open-file limit: every client is a socket in a generator and in the router worker. The script
raises its soft RLIMIT_NOFILE to the hard limit (resource.setrlimit, the same as `ulimit -n
$(ulimit -Hn)` in the shell), which the router and the generators inherit, and refuses to start
when the hard limit is below what the run needs (raise it with `ulimit -Hn` as root, or LimitNOFILE=
in a systemd unit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from bench.systems import NODE, SERVER_CPU, shipped_loglevel
from tests.support.router import REPO, RouterProcess, wait_for

LOAD_CPU = "1"
GENERATOR = REPO / "bench" / "restart_clients.mjs"


def raise_open_file_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"the open-file limit (hard {hard}) is below the {needed} this run needs: "
                         "raise it (ulimit -Hn as root, LimitNOFILE= for a unit) or pass fewer --clients")  # fmt: skip
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Generator:
    def __init__(self, url: str, count: int, name: str, kit: dict, secret: str, timeout_s: float,
                 kit_file: Path | None) -> None:  # fmt: skip
        job = {"url": url, "count": count, "name": name, "kit": kit, "inflight": 100, "timeout_s": timeout_s}
        env = {**os.environ, "JWT_SECRET": secret}
        if kit_file is not None:
            env["RESTART_KIT_FILE"] = str(kit_file.resolve())
        self.process = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, NODE, str(GENERATOR), json.dumps(job)], cwd=REPO / "bench",
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lock = threading.Lock()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the generator exited ({self.process.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        with self.lock:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            return self.read()

    def close(self) -> None:
        try:
            self.process.stdin.write("close\n")
            self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


class CpuSampler(threading.Thread):
    """CPU seconds of the router's processes (whichever node runs now) and of the generators, every 0.25 s."""

    def __init__(self, node: RouterProcess, generators: list[Generator]) -> None:
        super().__init__(daemon=True)
        self.node, self.generators = node, generators
        self.samples: list[tuple[float, float, float]] = []  # (time, router CPU s, generators CPU s)
        self.seen: dict[int, float] = {}
        self.stopping = threading.Event()

    def _cpu(self, pids) -> float:
        total = 0.0
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def _router_cpu(self) -> float:
        """Cumulative CPU of every router process seen so far (a stopped one keeps its last figure)."""
        # Every process of the node, a worker also before it renames itself "crossbar-worker".
        pids = []
        if self.node.process.poll() is None:
            try:
                controller = psutil.Process(self.node.process.pid)
                pids = [controller.pid, *(c.pid for c in controller.children(recursive=True))]
            except psutil.Error:
                pass
        for pid in pids:
            value = self._cpu([pid])
            if value:
                self.seen[pid] = max(self.seen.get(pid, 0.0), value)
        return sum(self.seen.values())

    def run(self) -> None:
        gen_pids = [g.process.pid for g in self.generators]
        gen_pids += [c.pid for g in self.generators for c in psutil.Process(g.process.pid).children(recursive=True)]
        while not self.stopping.is_set():
            self.samples.append((time.time(), self._router_cpu(), self._cpu(gen_pids)))
            time.sleep(0.2)

    def _at(self, t: float):
        """The first sample at or after t (the last one if none)."""
        return next((s for s in self.samples if s[0] >= t), self.samples[-1])

    def percent(self, start: float, end: float, column: int) -> float:
        """Percent of one core between the samples nearest after start and end."""
        a, b = self._at(start), self._at(end)
        return 100 * (b[column] - a[column]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")

    def peak(self, start: float, end: float, column: int) -> float:
        """The busiest second between start and end (whole seconds from start)."""
        seconds = max(1, int(end - start))
        return max(self.percent(start + s, start + s + 1, column) for s in range(seconds))


def listen_drops() -> dict[str, int]:
    """The kernel's counters of connections dropped at a full listen queue (all sockets of the machine)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
            return {k: row.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


def per_second(times: list[float], start: float) -> Counter:
    return Counter(int(t - start) for t in times)


def run(clients: int, generators: int, kit: dict, timeout_s: float, backlog: int | None = None,
        kit_file: Path | None = None) -> dict:  # fmt: skip
    limit = raise_open_file_limit(clients + 2048)
    secret = secrets.token_urlsafe(32)
    workdir = Path(tempfile.mkdtemp(prefix="bench-restart-"))

    def edit(config):
        if backlog is not None:
            config["workers"][0]["transports"][0]["endpoint"]["backlog"] = backlog

    node = RouterProcess(workdir, env={"JWT_SECRET": secret}, loglevel=shipped_loglevel(), cpus=SERVER_CPU,
                         edit_config=edit).start()  # fmt: skip
    gens: list[Generator] = []
    sampler = None
    try:
        shares = [clients // generators + (1 if i < clients % generators else 0) for i in range(generators)]
        t_open = time.time()
        gens = [Generator(node.url, n, f"g{i}", kit, secret, timeout_s, kit_file) for i, n in enumerate(shares)]
        ready = [g.read() for g in gens]
        opened = time.time() - t_open
        print(f"  {clients} clients joined in {opened:.1f} s ({[r['ready'] for r in ready]} per generator)", flush=True)
        sampler = CpuSampler(node, gens)
        sampler.start()
        time.sleep(1.0)
        drops0 = listen_drops()
        t_stop = time.time()
        node.stop()
        t_down = time.time()
        node.start()
        t_ready = time.time()
        print(f"  router stopped in {t_down - t_stop:.1f} s, ready again after {t_ready - t_down:.1f} s", flush=True)

        def all_back():
            return sum(g.ask("status")["rejoined"] for g in gens) == clients

        wait_for(all_back, timeout_s, "every client to join again", interval=0.1)
        t_back = time.time()
        time.sleep(0.5)
        drops = {k: v - drops0.get(k, 0) for k, v in listen_drops().items()}
        reports = [g.ask(f"report {int(t_stop * 1000)}") for g in gens]
    finally:
        if sampler is not None:
            sampler.stopping.set()
        for g in gens:
            g.close()
        node.stop()
    events = [(t / 1000, kind, detail) for r in reports for t, kind, detail in r["events"]]
    attempts = [t for t, kind, _ in events if kind == "attempt"]
    logins = [t for t, kind, _ in events if kind == "login"]
    joins = [t for t, kind, _ in events if kind == "join"]
    fails = Counter(detail for _, kind, detail in events if kind == "fail")
    failed_connects = sum(n for d, n in fails.items() if d.endswith(" connect"))
    failed_logins = sum(n for d, n in fails.items() if d.endswith(" login"))
    attempts_s, logins_s, joins_s = (per_second(x, t_stop) for x in (attempts, logins, joins))
    # A few clients whose connects the kernel dropped wait for TCP's retransmissions: the last join
    # says little about the rest. Percentiles of the joins, in seconds after the router was ready
    # (negative: before the script saw it ready).
    after_ready = sorted(t - t_ready for t in joins)
    percentile = lambda p: after_ready[min(len(after_ready) - 1, int(p * len(after_ready)))]  # noqa: E731
    seconds = int(t_back - t_stop) + 1
    timeline = [
        {"s": s, "attempts": attempts_s[s], "logins": logins_s[s], "joins": joins_s[s],
         "router_cpu": round(sampler.percent(t_stop + s, t_stop + s + 1, 1))}  # nan: no sample apart
        for s in range(seconds)
    ]  # fmt: skip
    return {
        "clients": clients, "generators": generators, "kit": kit, "open_file_limit": limit, "backlog": backlog,
        "kit_file": str(kit_file) if kit_file else None,
        "initial_join_seconds": opened,
        "stop_seconds": t_down - t_stop, "down_to_ready_seconds": t_ready - t_down,
        "back_after_stop_seconds": t_back - t_stop, "back_after_ready_seconds": t_back - t_ready,
        "joined_after_ready_p50_p95_p99": [percentile(0.5), percentile(0.95), percentile(0.99)],
        "connect_attempts": len(attempts), "logins": len(logins), "joins": len(joins),
        "failed_connects": failed_connects, "failed_logins": failed_logins,
        "failures_by_reason": dict(fails.most_common()),
        "peak_attempts_per_s": max(attempts_s.values(), default=0),
        "peak_logins_per_s": max(logins_s.values(), default=0),
        "peak_joins_per_s": max(joins_s.values(), default=0),
        "router_cpu_percent_ready_to_back": sampler.percent(t_ready, t_back, 1),
        "router_cpu_percent_peak_1s": sampler.peak(t_ready, t_back, 1),
        "generator_cpu_percent_stop_to_back": sampler.percent(t_stop, t_back, 2),
        "generator_cpu_percent_peak_1s": sampler.peak(t_stop, t_back, 2),
        "generator_cpu_s": [r["cpu_s"] for r in reports],
        "listen_queue_drops": drops,
        "timeline": timeline,
    }  # fmt: skip


def print_report(r: dict) -> None:
    print(f"restart with {r['clients']} JS-kit clients ({r['generators']} generators on core {LOAD_CPU}, "
          f"router on core {SERVER_CPU}, listen backlog {r['backlog'] or 'as shipped'}; "
          f"kit {r['kit_file'] or 'web/crossbar-jwt/crossbar-jwt.js'}, options {json.dumps(r['kit'])}; "
          f"open-file limit {r['open_file_limit']})")  # fmt: skip
    print(f"  all back {r['back_after_stop_seconds']:.1f} s after the stop, "
          f"{r['back_after_ready_seconds']:.1f} s after the router was ready "
          f"(stop {r['stop_seconds']:.1f} s, start {r['down_to_ready_seconds']:.1f} s)")  # fmt: skip
    p50, p95, p99 = r["joined_after_ready_p50_p95_p99"]
    print(f"  half of the clients joined {p50:.1f} s after the router was ready, 95 % {p95:.1f} s, 99 % {p99:.1f} s")
    print(f"  connect attempts {r['connect_attempts']}, logins {r['logins']}, joins {r['joins']}")
    print(
        f"  wasted: {r['failed_connects']} connects refused or failed before the login, "
        f"{r['failed_logins']} logins that did not end in a session; by reason: {r['failures_by_reason']}"
    )
    print(
        f"  peak per second: {r['peak_attempts_per_s']} connect attempts, {r['peak_logins_per_s']} logins, "
        f"{r['peak_joins_per_s']} joins; listen queue drops {r['listen_queue_drops']}"
    )
    print(f"  router CPU from ready to all back {r['router_cpu_percent_ready_to_back']:.0f} % "
          f"(peak second {r['router_cpu_percent_peak_1s']:.0f} %); "
          f"generators {r['generator_cpu_percent_stop_to_back']:.0f} % "
          f"(peak second {r['generator_cpu_percent_peak_1s']:.0f} % of one core)")  # fmt: skip
    print(
        "  second: attempts/logins/joins router-CPU% | "
        + "  ".join(f"{t['s']}: {t['attempts']}/{t['logins']}/{t['joins']} {t['router_cpu']}%" for t in r["timeline"])
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--generators", type=int, default=2, help="node processes, all on core 1")
    parser.add_argument("--kit", type=json.loads, default={}, help="kit options as JSON: '{\"maxRetryDelay\": 1.5}'")
    parser.add_argument("--kit-file", type=Path, help="another copy of the JS kit (an .mjs file), e.g. an older one")
    parser.add_argument("--timeout", type=float, default=240, help="seconds each phase may take at most")
    parser.add_argument(
        "--backlog", type=int, help="the router's listen backlog (shipped: 1024, Crossbar's default: 50)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.clients, args.generators, args.kit, args.timeout, args.backlog, args.kit_file)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
