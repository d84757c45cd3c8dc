"""Every Python dotted path a node config names resolves: in the shipped configs and in derived ones.

Crossbar resolves these only when a worker starts, so a moved module would otherwise be found by
a user's router failing to start. The old paths that deployed configs name keep working for one
release (CHANGELOG.md), and they must resolve to the very same objects as the new ones.
"""

import ast
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.router import REPO

SHIPPED = sorted((REPO / ".crossbar").glob("config*.json"))


def _derived() -> dict[str, dict]:
    from authenticator.config.production_profile import production_config
    from authenticator.config.proxy_profile import proxy_config

    demo = json.loads((REPO / ".crossbar" / "config.json").read_text())
    return {
        "proxies(demo, 2)": proxy_config(demo, proxies=2),
        "production(demo)": production_config(demo),
        "proxies(production(demo), 2)": proxy_config(production_config(demo), proxies=2),
    }


def _python_paths(config):
    """(where, module, attribute) for every Python object the config makes Crossbar import, as
    config/node_config.py finds them (for the deprecation warnings and the derivations)."""
    from authenticator.config.node_config import _python_paths as walk

    for where, dotted, _ in walk(config):
        module, _, attribute = dotted.rpartition(".")
        yield where, module, attribute


def _configs():
    configs = {path.name: json.loads(path.read_text()) for path in SHIPPED}
    configs.update(_derived())
    return configs


@pytest.mark.parametrize("name", sorted(_configs()))
def test_every_python_path_in_a_node_config_resolves(name):
    paths = list(_python_paths(_configs()[name]))
    assert paths, f"{name} names no Python object: the walk is wrong"
    for where, module, attribute in paths:
        assert attribute in _top_level_names(module), f"{name}{where}: {module}.{attribute} does not exist"


def _top_level_names(module: str) -> set[str]:
    """The names a module defines at its top level, read without importing it (the demo issuer
    builds its app at import, from the current directory)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"module {module} does not exist"
    tree = ast.parse(Path(spec.origin).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def test_the_shipped_configs_name_no_deprecated_path():
    from authenticator.deprecated_paths import OLD_TO_NEW

    for name, config in _configs().items():
        for where, module, attribute in _python_paths(config):
            assert f"{module}.{attribute}" not in OLD_TO_NEW, f"{name}{where} names the old path {module}.{attribute}"


def _old_paths():
    from authenticator.deprecated_paths import OLD_TO_NEW

    assert OLD_TO_NEW, "no old path is kept"
    return sorted(OLD_TO_NEW.items())


# A fresh interpreter per path: the Twisted and asyncio kits cannot share one (txaio picks one loop).
_SAME_OBJECT = """
import importlib, sys, warnings
old_module, old_name, new_module, new_name = sys.argv[1:]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old_object = getattr(importlib.import_module(old_module), old_name)
assert any(issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message) for w in caught), caught
assert old_object is getattr(importlib.import_module(new_module), new_name), (old_object, new_module)
real = importlib.import_module(new_module)
assert sys.modules[old_module] is real and real.__spec__.name == new_module and real.__spec__.origin, real.__spec__
print("same object")
"""


@pytest.mark.parametrize(("old", "new"), _old_paths())
def test_an_old_path_gives_the_same_object_with_a_deprecation_warning(old, new, tmp_path):
    # the demo issuer builds its app at import, from the node directory: a copy of the shipped one
    shutil.copytree(REPO / ".crossbar", tmp_path / ".crossbar")
    env = {**os.environ, "CROSSBAR_DIR": str(tmp_path / ".crossbar"), "JWT_SECRET": "s" * 32}
    old_module, _, old_name = old.rpartition(".")
    new_module, _, new_name = new.rpartition(".")
    done = subprocess.run([sys.executable, "-c", _SAME_OBJECT, old_module, old_name, new_module, new_name],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "same object", done.stderr[-2000:]
    assert old in (REPO / "CHANGELOG.md").read_text(), f"CHANGELOG.md does not say that {old} moved"


def test_the_changelog_exists_beside_the_readme():
    assert Path(REPO / "CHANGELOG.md").is_file()


def _as_of_0_1(config: dict) -> dict:
    """The config as release 0.1 named its Python objects."""
    from authenticator.contract import DEPRECATED_PATHS

    old_of = {new: old for old, new in DEPRECATED_PATHS.items()}
    text = json.dumps(config)
    for new, old in old_of.items():
        module, _, name = new.rpartition(".")
        old_module = old.rpartition(".")[0]
        text = text.replace(f'"{new}"', f'"{old}"')  # a classname
        wsgi = '"module": "{}", "object": "{}"'
        text = text.replace(wsgi.format(module, name), wsgi.format(old_module, name))
    old = json.loads(text)
    assert old != config, "no path was rewritten"
    return old


def test_a_0_1_config_derives_the_same_proxy_and_production_configs_as_a_current_one():
    """A proxy-config of an old config must keep /publish and /auth in the router worker (only the
    new paths were recognized: /publish was left on the proxies, answering 503 for ever)."""
    from authenticator.config.production_profile import production_config
    from authenticator.config.proxy_profile import proxy_config

    demo = json.loads((REPO / ".crossbar" / "config.json").read_text())
    old = _as_of_0_1(demo)
    assert proxy_config(old, proxies=2) == proxy_config(demo, proxies=2)
    assert production_config(old) == production_config(demo)


def test_check_names_each_old_path_as_a_warning_and_passes(tmp_path):
    shutil.copytree(REPO / ".crossbar", tmp_path / ".crossbar")
    old = _as_of_0_1(json.loads((REPO / ".crossbar" / "config.json").read_text()))
    (tmp_path / ".crossbar" / "config-0.1.json").write_text(json.dumps(old))
    done = subprocess.run(
        [sys.executable, "-m", "authenticator", "check", "--cbdir", str(tmp_path / ".crossbar"), "--config",
         "config-0.1.json"], capture_output=True, text=True, timeout=60, env={**os.environ, "JWT_SECRET": "s" * 32},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning: ") and "moved to" in line]
    assert len(warned) == 4 and all("CHANGELOG.md" in line for line in warned), done.stderr
    assert "authenticator.component.AuthenticatorComponent moved to authenticator.server.component" in done.stderr
