"""A real `crossbar` node for tests: the repo's own .crossbar/config.json in a temporary node
directory, on a free loopback port, with its own secret."""

from __future__ import annotations

import json
import os
import signal
import socket
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
    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None, edit_config=None) -> None:
        self.workdir = workdir
        self.cbdir = workdir / ".crossbar"
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.log_file = workdir / "node.log"
        self.process: subprocess.Popen | None = None
        self._prepare(edit_config)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def config(self) -> dict:
        return json.loads((self.cbdir / "config.json").read_text())

    def _prepare(self, edit_config) -> None:
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

    def start(self) -> RouterProcess:
        self._log_offset = self.log_size()  # a restart appends: only look at what this run writes
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(CROSSBAR), "start", "--cbdir", str(self.cbdir), "--loglevel", "info"],
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
        return self.process.poll() is not None or READY_LINE in self.log()[self._log_offset :]

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
