"""What the Python client kit may import: Autobahn, txaio, the standard library, the wire names
(authenticator.contract) and itself — an application installs it without the router's
dependencies. The framework is named by its shell only (twisted.py: Twisted; asyncio.py: asyncio);
the loop (loop.py) and the decisions (common.py) are framework-free, as autobahn/wamp/ is.
tests/unit/test_layers.py holds the package's layers; this is the kit's allow-list."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.router import REPO

KIT = REPO / "authenticator" / "kit"
ALLOWED = {"autobahn", "txaio", "__future__"} | set(sys.stdlib_module_names)
FRAMEWORK_OF = {"twisted.py": "twisted", "asyncio.py": "asyncio"}  # the one framework a shell may name


def imports_of(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: a relative import"
            modules.append(node.module)
    return modules


@pytest.mark.parametrize("path", sorted(KIT.glob("*.py")), ids=lambda path: path.name)
def test_the_kit_imports_only_autobahn_txaio_the_standard_library_and_the_wire_names(path):
    framework = FRAMEWORK_OF.get(path.name)
    for module in imports_of(path):
        top = module.split(".")[0]
        if top == "authenticator":
            assert module == "authenticator.contract" or module.startswith("authenticator.kit."), (path.name, module)
        elif top in ("twisted", "asyncio"):
            assert top == framework, f"{path.name} imports {module}: only the {top} shell names {top}"
        else:
            assert top in ALLOWED, (path.name, module)


def test_the_loop_and_the_decisions_load_no_framework():
    probe = ("import sys, authenticator.kit.loop, authenticator.kit.common; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'twisted', 'asyncio'}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# Each kit in its own interpreter (txaio takes one framework per process).
_WRONG_CONTEXT = {
    "twisted": "import ssl\nfrom authenticator.kit.twisted import Client\n"
               "Client('wss://127.0.0.1:1/ws', 'realm1', ssl_context=ssl.create_default_context())",
    "asyncio": "from twisted.internet.ssl import optionsForClientTLS\nfrom authenticator.kit.asyncio import Client\n"
               "Client('wss://127.0.0.1:1/ws', 'realm1', ssl_context=optionsForClientTLS('localhost'))",
}  # fmt: skip


@pytest.mark.parametrize("framework", sorted(_WRONG_CONTEXT))
def test_the_other_frameworks_tls_context_is_refused_at_once_saying_which_to_give(framework):
    """Not unreachable for ever with no line: a TypeError naming what this kit takes."""
    done = subprocess.run([sys.executable, "-c", _WRONG_CONTEXT[framework]], cwd=REPO, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    expected = {"twisted": "TypeError: the Twisted kit takes", "asyncio": "TypeError: the asyncio kit takes"}
    assert done.returncode == 1 and expected[framework] in done.stderr, done.stderr


def test_python_m_authenticator_without_the_router_says_what_to_install(tmp_path):
    """A kit-only install has no click: one line naming the extra, not a traceback."""
    blocker = tmp_path / "click.py"
    blocker.write_text("raise ModuleNotFoundError(\"No module named 'click'\", name='click')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-m", "authenticator", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == ("python -m authenticator needs the router's packages (click is not installed): "
                                   "pip install 'crossbar-jwt[router]'"), done.stderr  # fmt: skip
