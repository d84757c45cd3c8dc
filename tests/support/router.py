"""A real `crossbar` node for tests: the repo's own .crossbar/config.json in a temporary node
directory, on a free loopback port, with its own secret."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CROSSBAR = Path(sys.executable).with_name("crossbar")
READY_LINE = "Ok, local node configuration ran successfully."
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll a condition until it holds (returns a truthy value) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RouterProcess:
    def __init__(
        self, workdir: Path, *, env: dict[str, str] | None = None, edit_config=None, loglevel: str = "info",
        cpus: str | None = None, proxies: int = 0, edit_scaled_config=None, production: dict | None = None,
        port: int | None = None,
    ) -> None:  # fmt: skip
        self.workdir = workdir
        self.proxies = proxies  # > 0: the scale-out config, that many proxy workers in front of the router
        # not None: the production profile (production_config of authenticator.config.production_profile,
        # with these options)
        self.production = production
        self.tls = bool(production and production.get("tls"))
        self.metrics_port = free_port()
        self.loglevel = loglevel
        self.cpus = cpus  # e.g. "0": pin the node and its workers to that core (taskset), as the benchmark does
        self.cbdir = workdir / ".crossbar"
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.log_file = workdir / "node.log"
        self.process: subprocess.Popen | None = None
        self._prepare(edit_config, edit_scaled_config)

    @staticmethod
    def shipped_config() -> dict:
        return json.loads((REPO / ".crossbar" / "config.json").read_text())

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws"

    @property
    def config(self) -> dict:
        return json.loads((self.cbdir / "config.json").read_text())

    def _prepare(self, edit_config, edit_scaled_config) -> None:
        self.cbdir.mkdir(parents=True, exist_ok=True)
        # The config's relative paths ("../web", pythonpath "..") resolve beside the node dir.
        for name in ("web", "authenticator"):
            link = self.workdir / name
            if not link.exists():
                link.symlink_to(REPO / name)
        (self.cbdir / "users.json").write_text((REPO / ".crossbar" / "users.json").read_text())
        config = json.loads((REPO / ".crossbar" / "config.json").read_text())
        router = config["workers"][0]
        router["transports"][0]["endpoint"]["port"] = self.port
        if edit_config is not None:
            edit_config(config)
        (self.cbdir / "config.json").write_text(json.dumps(config, indent=2))
        if self.proxies:
            from authenticator.config.proxy_profile import proxy_config

            scaled = proxy_config(config, self.proxies, internal_port=free_port())
            if edit_scaled_config is not None:
                edit_scaled_config(scaled)
            (self.cbdir / "config-proxies.json").write_text(json.dumps(scaled, indent=2))
        if self.production is not None:
            from authenticator.config.production_profile import production_config

            derived = production_config(config, port=self.port, metrics_port=self.metrics_port, **self.production)
            (self.cbdir / "config-production.json").write_text(json.dumps(derived, indent=2))

    def start(self) -> RouterProcess:
        self._log_offset = self.log_size()  # a restart appends: only look at what this run writes
        with self.log_file.open("ab") as log:
            pin = ["taskset", "-c", self.cpus] if self.cpus else []
            self.process = subprocess.Popen(
                [
                    *pin,
                    str(CROSSBAR),
                    "start",
                    "--cbdir",
                    str(self.cbdir),
                    "--loglevel",
                    self.loglevel,
                    *(["--config", "config-proxies.json"] if self.proxies else []),
                    *(["--config", "config-production.json"] if self.production is not None else []),
                ],  # fmt: skip
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready_or_dead, START_TIMEOUT, f"crossbar to start (log: {self.log_file})")
        if self.process.poll() is not None:
            tail = self.log()[self._log_offset :][-6000:]
            raise RuntimeError(f"crossbar exited with {self.process.returncode}:\n{tail}")
        return self

    def _ready_or_dead(self) -> bool:
        if self.process.poll() is not None:
            return True
        if self.loglevel in ("info", "debug", "trace") and READY_LINE not in self.log()[self._log_offset :]:
            return False  # quieter levels do not log Crossbar's ready line
        # Crossbar logs its ready line also when a worker died during the start: the path decides.
        return self._websocket_path_answers()

    def _websocket_path_answers(self) -> bool:
        # The ws path comes up last; before that the web transport answers 404 (or nothing at all).
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if self.tls:  # readiness only: the tests check the certificate themselves
                    context = ssl.create_default_context()
                    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                    s = context.wrap_socket(s)  # noqa: PLW2901
                s.sendall(b"GET /ws HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                status = s.recv(64).split(b" ", 2)
        except OSError:
            return False
        return len(status) > 1 and status[1] != b"404"

    def node_pids(self) -> list[int]:
        """The controller and its workers: every process the node's CPU time is spent in."""
        return [self.process.pid, *self.worker_pids()]

    def worker_pids(self) -> list[int]:
        """The node's worker processes (router, proxies), for CPU and memory figures."""
        import psutil

        # Crossbar retitles its processes: "crossbar-worker [crossbar.worker.router.RouterController]".
        return [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)
                if p.cmdline() and p.cmdline()[0].startswith("crossbar-worker")]  # fmt: skip

    def worker_holding(self, client) -> int:
        """The pid of the worker that holds a connected client's TCP connection (behind proxies:
        which proxy serves it; Crossbar's x_cb_proxy_worker never reaches clients, see
        authenticator/patches/welcome_details.py)."""
        import psutil

        client_port = client._transport.transport.getHost().port
        for pid in self.worker_pids():
            if any(c.raddr and c.raddr.port == client_port for c in psutil.Process(pid).net_connections("tcp")):
                return pid
        raise LookupError(f"no worker holds the connection from port {client_port}")

    def worker_listening_on(self, port: int) -> int:
        import psutil

        for pid in self.worker_pids():
            if any(c.status == "LISTEN" and c.laddr.port == port for c in psutil.Process(pid).net_connections("tcp")):
                return pid
        raise LookupError(f"no worker listens on port {port}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def restart(self) -> RouterProcess:
        self.stop()
        return self.start()

    def close_reason(self, reason: str) -> str:
        """The reason a client sees when the router ends its session (wamp.session.kill).

        Crossbar 26's proxy workers drop it: the proxy answers the router's GOODBYE with an ABORT
        (wamp.error.authentication_failed) to the joined client, which AutobahnPython reports as a
        lost transport. The client learns the reason when it reconnects (docs/scaling.md).
        """
        return "wamp.close.transport_lost" if self.proxies else reason

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0, after: int = 0) -> str:
        """Wait for a log line containing text (only in log written after offset `after`)."""

        def find():
            for line in self.log()[after:].splitlines():
                if text in line:
                    return line
            return None

        return wait_for(find, timeout, f"log line containing {text!r}")

    def log_size(self) -> int:
        return len(self.log())


def tls_production_node(workdir: Path, origins: tuple[str, ...] | None = None) -> RouterProcess:
    """A started production-profile router serving wss:// with a certificate of a test CA
    (`node.certificates.ca` is the CA file a client trusts), the secret tests mint with."""
    from tests.support.tls import make_certificates
    from tests.support.tokens import TEST_SECRET

    certificates = make_certificates(workdir / ".crossbar")
    production: dict = {"tls": {"key": "server.key", "certificate": "server.crt"}}
    if origins is not None:
        production["origins"] = origins
    node = RouterProcess(workdir, env={"JWT_SECRET": TEST_SECRET}, loglevel="warn", production=production).start()
    node.certificates = certificates
    return node


def start_all(routers: list[RouterProcess]) -> list[RouterProcess]:
    """Start the nodes at once rather than one after the other: a start mostly waits for its own
    node (5-8 s each here). If one fails, none is left running."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(len(routers)) as pool:
            list(pool.map(RouterProcess.start, routers))
    except BaseException:
        stop_all(routers)
        raise
    return routers


def stop_all(routers: list[RouterProcess]) -> list[int | None]:
    """Stop the nodes at once; their exit statuses, in order (RouterProcess.stop)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(routers)) as pool:
        return list(pool.map(RouterProcess.stop, routers))
