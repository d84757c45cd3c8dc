"""Several nodes joined by router links, written by the real `python -m authenticator cluster-config`
(a full mesh, one Redis) and started as RouterProcesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.router import REPO, RouterProcess, port_answers, start_all, stop_all
from tests.support.tokens import TEST_SECRET

LINKED_LINE = "rlink remote session ready"


def _free_run(count: int, step: int) -> int:
    """A port p with p, p + step, ... p + (count - 1) * step free now, below the kernel's ephemeral
    ports (32768 and up here), where no client socket of another test takes one meanwhile."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 32000)
        ports = [base + i * step for i in range(count)]
        if max(ports) < 65536 and not any(port_answers(p) for p in ports) and all(_bindable(p) for p in ports):
            return base
    raise RuntimeError("no run of free ports")


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_config(out: Path, nodes: int, redis_url: str, *extra_args: str,
                   config: str = "config.json") -> subprocess.CompletedProcess:  # fmt: skip
    """Run the real command on the shipped config; its ports are free ones."""
    step = 1
    ports = ["--first-port", str(_free_run(nodes, step)), "--link-port", str(_free_run(nodes, step))]
    return subprocess.run(
        [sys.executable, "-m", "authenticator", "cluster-config", "--cbdir", str(REPO / ".crossbar"),
         "--config", config, "--nodes", str(nodes), "--redis-url", redis_url, "--out", str(out),
         "--port-step", str(step), *ports, *extra_args],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip


def start_cluster(tmp_path_factory, name: str, nodes: int, redis_url: str, *, edit_config=None,
                  loglevel: str = "info") -> list[RouterProcess]:  # fmt: skip
    """`nodes` nodes from cluster-config, started, every link up. `edit_config(i, config)` may change
    node i's generated config before it starts (a test's own policy rule)."""
    out = tmp_path_factory.mktemp(name)
    done = cluster_config(out, nodes, redis_url)
    assert done.returncode == 0, done.stderr
    routers = []
    for i in range(nodes):
        workdir = out / f"node-{i + 1}"
        generated = json.loads((workdir / ".crossbar" / "config.json").read_text())
        if edit_config is not None:
            edit_config(i, generated)

        def replace(config, generated=generated):
            config.clear()
            config.update(generated)

        port = generated["workers"][0]["transports"][0]["endpoint"]["port"]
        routers.append(RouterProcess(workdir, env={"JWT_SECRET": TEST_SECRET}, edit_config=replace, port=port,
                                     loglevel=loglevel))  # fmt: skip
    start_all(routers)  # at once: a node's links retry until the others answer
    try:
        for router in routers:
            wait_linked(router, nodes - 1)
    except BaseException:
        stop_all(routers)  # none outlives a failed start
        raise
    return routers


def wait_linked(router: RouterProcess, links: int, after: int | None = None, timeout: float = 30) -> None:
    """Until `links` of the node's router links have joined the other nodes (since log offset `after`)."""
    from tests.support.router import wait_for

    start = router._log_offset if after is None else after
    wait_for(lambda: router.log()[start:].count(LINKED_LINE) >= links, timeout,
             f"{links} router links of {router.workdir.name} to come up (log: {router.log_file})")  # fmt: skip
