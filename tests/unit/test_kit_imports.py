"""What the Python client kit may import: Autobahn, txaio, the standard library, the wire names
(authenticator.contract) and itself — an application installs it without the router's
dependencies. The framework is named by its shell only (twisted.py: Twisted; asyncio.py: asyncio);
the loop (loop.py) and the decisions (common.py) are framework-free, as autobahn/wamp/ is.
tests/unit/test_layers.py holds the package's layers; this is the kit's allow-list."""

import ast
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
