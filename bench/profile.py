"""Where a system's server CPU goes under load: py-spy samples every server process while the load
generator runs, then a report of the hottest functions (own time and inclusive time) per process.

    .venv/bin/python -m bench.profile --system jwt --load sessions [--seconds 20]
    make bench BENCH_ARGS=--profile        # the same for jwt (sessions, fan-out) and jwt-2proxy

A report, not a figure: py-spy's sampling (100 Hz) slows the sampled process a little.
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from bench.systems import make_systems
from tests.support.router import REPO

PY_SPY = Path(sys.executable).parent / "py-spy"
LOADS = {
    "sessions": {"mode": "sessions", "count": 400, "inflight": 50},
    "fanout": {"mode": "fanout", "subscribers": 100, "events": 1000, "window": 20, "topic": "app.chat.bench"},
}


def _load_until(stop: threading.Event, system, load: str, secret: str) -> None:
    from bench.run import run_load

    while not stop.is_set():
        run_load({**LOADS[load], "target": system.target, "timeout_s": 120}, secret)


def _stacks(raw: Path) -> collections.Counter:
    """py-spy's raw format: one line per distinct stack, 'frame;frame;... count' (outermost first)."""
    stacks: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _short(frame: str) -> str:
    """'func (path/to/module.py:123)' -> 'func (module.py)'; site-packages paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.replace(str(REPO) + '/', '')})"


def report(stacks: collections.Counter, top: int) -> list[str]:
    total = sum(stacks.values()) or 1
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    ours = 0
    for stack, count in stacks.items():
        frames = [_short(f) for f in stack]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        if any("authenticator/" in f for f in stack):
            ours += count
    lines = [f"  {total} samples; stacks through crossbar-jwt's own code (authenticator/): {100 * ours / total:.1f} %",
             "  own time:"]  # fmt: skip
    lines += [f"    {100 * c / total:5.1f} %  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive time (crossbar-jwt, crossbar, autobahn, txaio, jwt frames):")
    interesting = [(f, c) for f, c in inclusive.most_common() if any(
        k in f for k in ("authenticator/", "crossbar/", "autobahn/", "jwt/", "bench/"))]  # fmt: skip
    lines += [f"    {100 * c / total:5.1f} %  {f}" for f, c in interesting[:top]]
    return lines


def profile(system_name: str, load: str, seconds: int, top: int, secret: str) -> str:
    system = next(s for s in make_systems(secret, proxies=True, fanout=load == "fanout") if s.name == system_name)
    system.start()
    stop = threading.Event()
    try:
        from bench.run import run_load

        run_load({**LOADS[load], "target": system.target, "timeout_s": 120}, secret)  # warm-up
        loader = threading.Thread(target=_load_until, args=(stop, system, load, secret), daemon=True)
        loader.start()
        out = Path(tempfile.mkdtemp(prefix="bench-profile-"))
        spies = {}
        for pid in system.server_pids():
            raw = out / f"{pid}.txt"
            spies[pid] = (raw, subprocess.Popen(
                [str(PY_SPY), "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "--format", "raw",
                 "-o", str(raw), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))  # fmt: skip
        lines = [f"{system_name} under {load} load, {seconds} s, py-spy at 100 Hz"]
        for pid, (raw, spy) in spies.items():
            _, err = spy.communicate(timeout=seconds + 60)
            what = " ".join(psutil.Process(pid).cmdline()[-4:])[-90:]
            lines.append(f"process {pid} ({what})")
            if spy.returncode != 0 or not raw.exists():
                lines.append(f"  py-spy failed: {err.decode(errors='replace')[-300:]}")
                continue
            lines += report(_stacks(raw), top)
        return "\n".join(lines)
    finally:
        stop.set()
        system.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="jwt", help="jwt, ceiling, minimal, jwt-1proxy, jwt-2proxy")
    parser.add_argument("--load", choices=sorted(LOADS), default="sessions")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() != "0":
        print("py-spy needs ptrace: run as root or `sysctl kernel.yama.ptrace_scope=0`", file=sys.stderr)
        return 2
    print(profile(args.system, args.load, args.seconds, args.top, "bench-" + secrets.token_urlsafe(32)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
