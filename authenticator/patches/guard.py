"""The start-up guard of the patch inventory: no patch runs unverified, or not at all, silently.

Once per worker process, before the first patch is installed, every patch's distributions are
compared with the versions it was verified on and every target symbol is looked up. A worker
with a problem refuses to start, one line per patch, saying what to do, unless the operator has
accepted exactly the running versions::

    CROSSBAR_JWT_ACCEPT_UNVERIFIED=crossbar==26.11.0,autobahn==26.11.1

Naming versions, not a yes/no switch, is deliberate: an acceptance given for one upgrade does
not carry over to the next one. Accepted patches still install where their targets exist; a
patch whose target is gone is skipped. Both are logged at warn at every start.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .inventory import PATCHES, Patch, by_name

ACCEPT_VARIABLE = "CROSSBAR_JWT_ACCEPT_UNVERIFIED"


@dataclass(frozen=True)
class PatchProblem:
    patch: Patch
    unverified: tuple[tuple[str, str], ...]  # (distribution, running version) not in the verified list
    missing: tuple[str, ...]  # targets that do not resolve

    def running(self) -> tuple[str, ...]:
        return tuple(f"{dist}=={version}" for dist, version in self.unverified)

    def refusal(self) -> str:
        verified = "; ".join(f"{dist} {', '.join(versions)}" for dist, versions in self.patch.verified)
        what = []
        if self.unverified:
            what.append(f"not verified on {', '.join(f'{d} {v}' for d, v in self.unverified)} (verified: {verified})")
        if self.missing:
            what.append(f"its target {', '.join(self.missing)} is gone, so it cannot be installed")
        accept = f" or accept the risk with {ACCEPT_VARIABLE}={','.join(self.running())}" if self.unverified else ""
        return (
            f"patch '{self.patch.name}' of Crossbar internals is {' and '.join(what)}. Install the verified "
            f"versions (pip install -c constraints.txt -e .), verify this one by running {self.patch.test} "
            f"on it and adding it to authenticator/patches/inventory.py{accept}."
        )

    def warning(self) -> str:
        if self.missing:
            return (
                f"authenticator: patch '{self.patch.name}' is NOT installed ({', '.join(self.missing)} is gone); this "
                f"worker runs without its protection: {self.patch.why} (accepted by {ACCEPT_VARIABLE})"
            )
        return (
            f"authenticator: patch '{self.patch.name}' runs on {', '.join(self.running())}, on which it was not "
            f"verified (accepted by {ACCEPT_VARIABLE}); run {self.patch.test} on this version"
        )


def check(
    patches: Iterable[Patch], version_of: Callable[[str], str | None], resolves: Callable[[str], bool]
) -> list[PatchProblem]:
    problems = []
    for patch in patches:
        unverified = tuple(
            (dist, version)
            for dist, versions in patch.verified
            if (version := version_of(dist) or "(not installed)") not in versions
        )
        missing = tuple(target for target in patch.targets if not resolves(target))
        if unverified or missing:
            problems.append(PatchProblem(patch, unverified, missing))
    return problems


def accepted_versions(value: str | None) -> frozenset[str]:
    """``crossbar==26.11.0, autobahn==26.11.1`` → {"crossbar==26.11.0", "autobahn==26.11.1"}."""
    return frozenset(part.strip().lower() for part in (value or "").split(",") if part.strip())


class Guard:
    """The verdict for this process: which problems refuse the start, which are accepted, and
    which patches are skipped because their target is gone."""

    def __init__(self, problems: list[PatchProblem], accepted: frozenset[str]) -> None:
        def is_accepted(problem: PatchProblem) -> bool:
            # A target gone on a verified version is a broken install, never accepted.
            return bool(problem.unverified) and all(r.lower() in accepted for r in problem.running())

        self.refused = [p for p in problems if not is_accepted(p)]
        self.accepted = [p for p in problems if is_accepted(p)]
        self._skipped = frozenset(p.patch.name for p in self.accepted if p.missing)

    def apply(self, name: str, install: Callable, *args, **kwargs):
        """Install the patch `name` (which must be in the inventory) unless its target is gone and
        the operator accepted running without it."""
        by_name(name)  # an install site that is not in the inventory fails here, in every test
        if name in self._skipped:
            return None
        return install(*args, **kwargs)


def resolves(target: str) -> bool:
    """Whether "module:Qualified.name" exists; "module:Class#attribute" names an attribute that
    Class's __init__ sets on each instance (its source must still assign self.attribute)."""
    if "#" in target:
        owner, _, attribute = target.partition("#")
        if not resolves(owner):
            return False
        module_name, _, qualified = owner.partition(":")
        cls = importlib.import_module(module_name)
        for part in qualified.split("."):
            cls = getattr(cls, part)
        try:
            return f"self.{attribute} =" in inspect.getsource(cls.__init__)
        except (OSError, TypeError):
            return False
    module_name, _, qualified = target.partition(":")
    try:
        value = importlib.import_module(module_name)
    except ImportError:
        return False
    for attribute in filter(None, qualified.split(".")):
        value = getattr(value, attribute, _MISSING)
        if value is _MISSING:
            return False
    return True


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


_MISSING = object()
_this_process: dict[str, Guard] = {}


def guard_this_process(warn: Callable[[str], None], environ: Mapping[str, str] = os.environ) -> Guard:
    """The guard of this worker process, checked once: refuses the start (the worker exits with
    one line per refused patch) or warns about each accepted problem, at every start."""
    guard = _this_process.get("guard")
    if guard is not None:
        return guard
    guard = Guard(check(PATCHES, installed_version, resolves), accepted_versions(environ.get(ACCEPT_VARIABLE)))
    if guard.refused:
        from authenticator.config.stop import stop_for_configuration

        stop_for_configuration([problem.refusal() for problem in guard.refused])
    for problem in guard.accepted:
        warn(problem.warning())
    _this_process["guard"] = guard
    return guard
