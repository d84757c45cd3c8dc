"""The package's layers, as docs/architecture.md draws them, are what its imports do.

An AST walk of every module of authenticator/ (imports inside functions included: a lazy import
is still a dependency): each layer imports only the layers below it, the pure core imports no
framework or network module, and the client kit imports nothing of the server.
"""

import ast
from pathlib import Path

import pytest

from tests.support.router import REPO

PACKAGE = REPO / "authenticator"

# layer: the layers of the package it may import (itself always). Read upwards: endpoints serve
# what the server component offers them, so the server imports endpoints, never the reverse.
MAY_IMPORT = {
    "contract": set(),
    "core": {"contract"},
    "config": {"contract", "core"},
    "patches": {"contract", "core", "config"},
    "endpoints": {"contract", "core", "config", "patches"},
    "server": {"contract", "core", "config", "patches", "endpoints"},
    "ops": {"contract", "core", "config"},
    "demo": {"contract", "core", "config"},
    "kit": {"contract"},
    "deprecated_paths": {"contract"},  # names the old modules as strings, imports them only when asked
    "__init__": {"deprecated_paths"},
    "__main__": {"ops"},
}

FRAMEWORKS = {"twisted", "autobahn", "crossbar", "txaio", "asyncio"}
NETWORK = {"socket", "ssl", "http.client", "http.server", "urllib.request", "selectors", "select", "requests", "redis",
           "sqlite3"}  # fmt: skip
SERVER_ONLY = {"crossbar", "jwt", "cryptography", "redis", "flask", "werkzeug", "prometheus_client", "click", "yaml"}
# layer: third-party or standard modules it must not import
MUST_NOT_IMPORT = {
    "contract": None,  # nothing at all but __future__
    "core": FRAMEWORKS | NETWORK | {"flask", "werkzeug", "prometheus_client", "click", "yaml", "subprocess"},
    "config": FRAMEWORKS | NETWORK,
    "kit": SERVER_ONLY,
}


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path):
    """(line, imported module) for every import of a module, relative ones made absolute."""
    package = ".".join(("authenticator", *path.relative_to(PACKAGE).parent.parts))
    yield from _imports_in(path.read_text(), package)


def _imports_in(source: str, package: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            if module == "authenticator":  # from authenticator import x: x is the module
                for alias in node.names:
                    yield node.lineno, f"authenticator.{alias.name}"
            else:
                yield node.lineno, module


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer():
    assert len(MODULES) > 30, "the walk found too few modules"
    unknown = {str(p.relative_to(REPO)) for p in MODULES if _layer(p) not in MAY_IMPORT}
    assert unknown == set(), "a new layer or top-level module: add it to MAY_IMPORT and docs/architecture.md"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_layers_below_it_and_what_its_layer_may_use(path):
    layer = _layer(path)
    allowed = MAY_IMPORT[layer] | {layer}
    forbidden = MUST_NOT_IMPORT.get(layer, set())
    problems = []
    for line, module in _imports(path):
        top = module.split(".")[0]
        if top == "authenticator":
            target = module.split(".")[1] if "." in module else "__init__"
            if target not in allowed:
                problems.append(f"line {line}: {layer} imports {module} ({target} is not below {layer})")
        elif forbidden is None and module != "__future__":
            problems.append(f"line {line}: {layer} must import nothing, imports {module}")
        elif forbidden and any(module == f or module.startswith(f + ".") for f in forbidden):
            problems.append(f"line {line}: {layer} must not import {module}")
    assert problems == [], f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_walk_sees_every_form_of_import():
    """The checks above cannot pass by missing an import form: lazy, relative and from-package."""
    code = "def f():\n    from authenticator import ops\n    from ..ops import cli\n    import twisted.internet\n"
    found = [module for _, module in _imports_in(code, "authenticator.server")]
    assert found == ["authenticator.ops", "authenticator.ops", "twisted.internet"]
