"""The patch inventory is complete and true, and its guard refuses what was not verified."""

import ast
import re
from pathlib import Path

import pytest

from authenticator.patches import ACCEPT_VARIABLE, PATCHES, Guard, check
from authenticator.patches.guard import accepted_versions, installed_version, resolves
from authenticator.patches.inventory import Patch

REPO = Path(__file__).resolve().parents[2]
FOREIGN = ("crossbar", "autobahn", "twisted", "txaio")


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_every_patch_is_verified_on_the_installed_versions_and_its_targets_exist(patch):
    assert check([patch], installed_version, resolves) == []


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_every_patch_names_its_installer_and_a_test_that_exists(patch):
    assert resolves(patch.installed_by), patch.installed_by
    path, _, name = patch.test.partition("::")
    source = (REPO / path).read_text()
    assert not name or re.search(rf"def {re.escape(name)}\b", source), patch.test


def _installers_of_foreign_attributes() -> set[str]:
    """Every function of the package that patches something not ours: "module:function". Three
    shapes: it assigns an attribute of a name imported from Crossbar, Autobahn, Twisted or txaio
    (``Dealer.processYield = ...``); it assigns a function it defines to any object's attribute
    (``router.authorize = authorize``: a wrapper installed on an instance); it adds or removes an
    observer of Twisted's log publisher."""
    found = set()
    for path in (REPO / "authenticator").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        foreign = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FOREIGN:
                foreign.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                foreign.update(
                    (a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in FOREIGN
                )
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            nested = {n.name for n in ast.walk(function) if isinstance(n, ast.FunctionDef) and n is not function}
            if any(_patches(node, foreign, nested) for node in ast.walk(function)):
                found.add(f"{module}:{function.name}")
    return found


def _patches(node: ast.AST, foreign: set[str], nested: set[str]) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("addObserver", "removeObserver") and _root(node.func) in foreign
    if not isinstance(node, ast.Assign):
        return False
    for target in node.targets:
        for attribute in (t for t in ast.walk(target) if isinstance(t, ast.Attribute)):
            if not isinstance(attribute.ctx, ast.Store):
                continue
            if _root(attribute) in foreign:
                return True
            if isinstance(node.value, ast.Name) and node.value.id in nested and _root(attribute) != "self":
                return True  # (a method keeping a function of its own is not a patch)
    return False


def _root(attribute: ast.Attribute) -> str | None:
    root = attribute
    while isinstance(root, ast.Attribute):
        root = root.value
    return root.id if isinstance(root, ast.Name) else None


def test_every_function_that_replaces_a_foreign_attribute_is_in_the_inventory():
    installers = {patch.installed_by for patch in PATCHES}
    found = _installers_of_foreign_attributes()
    # the scan sees each shape: a class attribute, a wrapper on an instance, a log observer
    assert {
        "authenticator.patches.forwarded_yields:drop_forwarded_yields",
        "authenticator.patches.publisher_decisions:install_decision_hook",
        "authenticator.patches.log_values:bound_log_values",
    } <= found
    assert found - installers == set()


def fake_patch(**changes) -> Patch:
    fields = {
        "name": "fake", "targets": ("authenticator.patches.guard:Guard.apply",),
        "installed_by": "authenticator.patches.guard:check", "why": "a test's",
        "verified": (("crossbar", ("26.10.1",)),), "test": "tests/unit/test_patch_inventory.py",
    }  # fmt: skip
    return Patch(**{**fields, **changes})


def versions(**running):
    return lambda dist: running.get(dist)


def test_an_unverified_version_refuses_the_start_with_one_line_naming_the_patch_and_the_way_out():
    problems = check([fake_patch()], versions(crossbar="26.11.0"), resolves)
    guard = Guard(problems, accepted_versions(None))
    [line] = [p.refusal() for p in guard.refused]
    assert "patch 'fake'" in line and "not verified on crossbar 26.11.0 (verified: crossbar 26.10.1)" in line
    assert f"{ACCEPT_VARIABLE}=crossbar==26.11.0" in line and "\n" not in line


def test_the_operator_accepts_exactly_the_running_versions_and_is_warned():
    problems = check([fake_patch()], versions(crossbar="26.11.0"), resolves)
    assert Guard(problems, accepted_versions("crossbar==26.11.1")).refused  # another version: still refused
    guard = Guard(problems, accepted_versions(" autobahn==1.0 , Crossbar==26.11.0"))
    assert guard.refused == [] and "accepted by CROSSBAR_JWT_ACCEPT_UNVERIFIED" in guard.accepted[0].warning()
    assert guard.apply("log-values", lambda: "installed") == "installed"


def test_a_target_gone_is_skipped_only_when_accepted_and_said_at_every_start():
    gone = fake_patch(name="log-values", targets=("crossbar._logging:no_such_observer",))
    problems = check([gone], versions(crossbar="26.11.0"), resolves)
    assert "crossbar._logging:no_such_observer is gone" in problems[0].refusal()
    guard = Guard(problems, accepted_versions("crossbar==26.11.0"))
    assert guard.apply("log-values", lambda: "installed") is None
    assert "is NOT installed" in guard.accepted[0].warning()
    # A target gone on a verified version is a broken install: no acceptance covers it.
    broken = check([gone], versions(crossbar="26.10.1"), resolves)
    assert Guard(broken, accepted_versions("crossbar==26.10.1")).refused


def test_a_patch_site_outside_the_inventory_fails_at_install():
    with pytest.raises(KeyError, match="no patch named 'unlisted'"):
        Guard([], frozenset()).apply("unlisted", lambda: None)


def test_a_missing_distribution_is_not_a_verified_one():
    [problem] = check([fake_patch()], versions(), resolves)
    assert problem.unverified == (("crossbar", "(not installed)"),)


MARKER_PREFIX = "_crossbar_jwt_"


def _private_attributes_set_on_other_objects() -> list[str]:
    """Every `x._name = ...` of the package where x is not ours (`self`, `cls`, a class of the same
    module) and `_name` is not a patch's own target (the inventory lists those): a marker or state
    we put on an object that is not ours (a request, a protocol, a function)."""
    patched = {re.split(r"[.#]", target.rpartition(":")[2])[-1] for patch in PATCHES for target in patch.targets}
    found = []
    for path in (REPO / "authenticator").rglob("*.py"):
        tree = ast.parse(path.read_text())
        ours = {"self", "cls"} | {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AugAssign | ast.AnnAssign) else []  # fmt: skip
            for target in targets:
                for attribute in (t for t in ast.walk(target) if isinstance(t, ast.Attribute)):
                    if not isinstance(attribute.ctx, ast.Store) or not attribute.attr.startswith("_"):
                        continue
                    if attribute.attr.startswith("__") or _root(attribute) in ours or attribute.attr in patched:
                        continue
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} .{attribute.attr}")
    return found


def test_what_we_put_on_objects_not_ours_has_one_prefix():
    """Markers and state on foreign objects are named one way (_crossbar_jwt_...), so a reader of a
    Crossbar or Twisted object in a debugger knows what is ours, and two patches cannot collide."""
    found = _private_attributes_set_on_other_objects()
    assert any(MARKER_PREFIX in entry for entry in found), "the scan finds none: it is broken"
    assert [entry for entry in found if f".{MARKER_PREFIX}" not in entry] == []
