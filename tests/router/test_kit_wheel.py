"""The Python client kit as a user installs it: `pip install crossbar-jwt` (the built wheel, in a
fresh venv with nothing else) holds every module of the package, brings Autobahn and Twisted but
nothing of the router (no Crossbar, PyJWT, Redis, Prometheus, Flask, PyYAML, click), and a kit
client running there joins a real router, subscribes and receives an event. And pyproject.toml
declares every package the code imports: the kit's in `dependencies`, the router's in the
`router` extra (not left to arrive through Crossbar)."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import threads

from tests.support.router import REPO
from tests.support.tokens import mint, unique
from tests.support.wamp import connect, eventually

# What the default install (`pip install crossbar-jwt`) is made for: it must import only what
# pyproject's `dependencies` declare.
KIT_FILES = ("kit", "contract.py", "__init__.py", "deprecated_paths.py")
# What only the router needs ([router] extra), by import name: none of it may come with the kit.
ROUTER_ONLY = ("crossbar", "jwt", "redis", "prometheus_client", "flask", "werkzeug", "yaml", "click")
# One process each: Autobahn picks one framework per process (txaio).
KIT_MODULES = ("authenticator.kit.twisted", "authenticator.kit.asyncio", "authenticator.contract")
BUILD_TIMEOUT = 300  # pip wheel and pip install: the first run downloads from PyPI, later ones hit pip's cache

# A program of the kit's user: join with a token, subscribe, print the first event, stop.
KIT_CLIENT = """
import os
import sys

from twisted.internet import defer, task

import authenticator
from authenticator.kit.twisted import Client

url, topic = sys.argv[1:3]


async def main(reactor):
    received = defer.Deferred()

    def on_event(value):
        if not received.called:
            received.callback(value)

    async def on_join(session, details):
        await session.subscribe(on_event, topic)
        print("subscribed", details.authid, authenticator.__file__, flush=True)

    client = Client(url, "realm1", lambda: os.environ["KIT_TOKEN"], on_join=on_join,
                    on_state=lambda state, c: print("state", state, c.reason or "", c.message or "", flush=True))
    stopped = client.start()

    def before_the_event(result):
        if not received.called:  # stopped for good (a refused token): fail instead of waiting forever
            received.errback(RuntimeError(f"stopped before the event: {result}"))
        return result

    stopped.addCallback(before_the_event)
    print("received", await received, flush=True)
    print("stopped", *(await client.stop()), flush=True)


task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str) -> set[str]:
    """The distributions pyproject.toml declares: the default install's, and those of extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    return {_distribution(re.match(r"[\w.-]+", requirement)[0]) for requirement in requirements}


def undeclared(paths, allowed: set[str]) -> dict[str, list[str]]:
    """Top-level names the modules under paths import that no allowed distribution provides (by
    this venv's packages_distributions()), each with the distributions that provide it here."""
    providers = importlib.metadata.packages_distributions()
    files = [f for path in paths for f in ([path] if path.is_file() else sorted(path.rglob("*.py")))]
    names = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    names -= set(sys.stdlib_module_names) | {"authenticator", "__future__"}
    return {name: providers.get(name, []) for name in sorted(names)
            if not {_distribution(d) for d in providers.get(name, [])} & allowed}  # fmt: skip


def test_every_package_the_router_imports_is_declared_not_left_to_arrive_through_crossbar():
    assert undeclared([REPO / "authenticator"], declared("router")) == {}


def test_the_kit_imports_only_what_the_default_install_declares():
    assert undeclared([REPO / "authenticator" / name for name in KIT_FILES], declared()) == {}


@dataclass
class KitInstall:
    source: Path  # the copy of the tree the wheel was built from
    wheel: Path
    python: Path  # the fresh venv's interpreter
    build_seconds: float
    install_seconds: float

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        # -I: neither the working directory nor PYTHONPATH: the package comes from the venv's site-packages.
        return subprocess.run([str(self.python), "-I", *args], capture_output=True, text=True, timeout=60,
                              cwd=self.source.parent, **kwargs)  # fmt: skip


def _run(command: list, what: str) -> None:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def kit_install(tmp_path_factory) -> KitInstall:
    """The wheel built from this tree, installed with its dependencies (and only those) into a new venv."""
    base = tmp_path_factory.mktemp("kit-wheel")
    # Built from a copy: setuptools never cleans build/lib, so a build in the tree would package
    # stale files left by an earlier build (a dropped subpackage among them), and would write
    # build/ into a tree others work in.
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "authenticator", source / "authenticator", ignore=shutil.ignore_patterns("__pycache__"))
    started = time.monotonic()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", base / "dist", source], "pip wheel")
    build_seconds = time.monotonic() - started
    (wheel,) = (base / "dist").glob("crossbar_jwt-*.whl")
    venv = base / "venv"
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", venv], "python -m venv")
    python = venv / "bin" / "python"
    # This venv's pip installs into the new one (--python): no pip of its own to set up there.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "-c", REPO / "constraints.txt",
          wheel], "pip install of the wheel")  # fmt: skip
    return KitInstall(source, wheel, python, build_seconds, time.monotonic() - started)


def test_the_wheel_holds_every_module_of_the_package(kit_install):
    modules = {path.relative_to(kit_install.source).as_posix() for path in
               (kit_install.source / "authenticator").rglob("*.py")}  # fmt: skip
    with zipfile.ZipFile(kit_install.wheel) as wheel:
        packaged = set(wheel.namelist())
    assert {"authenticator/kit/__init__.py", "authenticator/kit/twisted.py", "authenticator/contract.py"} <= modules
    assert sorted(modules - packaged) == []


def test_installing_the_kit_brings_nothing_of_the_router(kit_install):
    probe = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    done = kit_install.run("-c", probe, *ROUTER_ONLY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


@pytest.mark.parametrize("module", KIT_MODULES)
def test_the_kit_imports_with_only_its_own_dependencies(kit_install, module):
    probe = "import importlib, sys; module = importlib.import_module(sys.argv[1]); print(module.__file__)"
    done = kit_install.run("-c", probe, module)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()).is_relative_to(kit_install.python.parents[1]), done.stdout


@pytest_twisted.ensureDeferred
async def test_a_kit_client_installed_from_the_wheel_joins_subscribes_and_receives(
    kit_install, single_worker_node, tmp_path
):
    router, name, topic = single_worker_node, unique("wheel-kit"), f"app.chat.{unique('wheel')}"
    script = tmp_path / "kit_client.py"
    script.write_text(KIT_CLIENT)
    output = tmp_path / "output.txt"
    env = {**os.environ, "KIT_TOKEN": mint(name, ["user"], ttl=300)}
    with output.open("wb") as sink:
        process = subprocess.Popen([str(kit_install.python), "-I", str(script), router.url, topic], cwd=tmp_path,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        lines = lambda: output.read_text().splitlines()  # noqa: E731
        joined = await eventually(
            lambda: [line for line in lines() if line.startswith("subscribed ")] or process.poll() is not None,
            30, "the kit client to join and subscribe",
        )  # fmt: skip
        assert process.poll() is None, "\n".join(lines())
        (line,) = joined
        _, authid, package = line.split(" ", 2)
        assert authid == name
        assert Path(package).is_relative_to(kit_install.python.parents[1])  # the wheel's, not this tree's
        publisher = await connect(router.url, mint("root", ["admin"], ttl=600))
        try:
            await publisher.publish(topic, "from the test", options=PublishOptions(acknowledge=True))
        finally:
            publisher.leave()
        assert await threads.deferToThread(process.wait, 15) == 0, "\n".join(lines())
        assert "received from the test" in lines()
        assert any(line.startswith("stopped ") for line in lines()), lines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
