"""Patch 'debug-formatting': Crossbar's and Autobahn's debug log lines no longer pretty-print their
values when debug is off.

Crossbar 26.10 and Autobahn 26.10 pass ``pformat(...)`` results as log arguments, e.g.
``self.log.debug("...{authextra}", authextra=pformat(authextra))`` in every WELCOME
(crossbar/router/session.py), every router attach (router.py), every WebSocket connection
(autobahn/websocket/protocol.py, the factory's whole configuration) and every proxy backend
connection (crossbar/worker/proxy.py). The arguments are built before the logger drops the line:
profiled under login load (``python -m bench.profile``) that was ~8 % of a router worker's CPU, ~24 %
of the router worker behind proxies and ~10 % of each proxy worker -- for lines nobody sees.

Each of these modules' ``pformat`` is replaced by :class:`Deferred`, which keeps the value and
pretty-prints it only when a log line is actually written (``format()``/``str()``), so a line at
debug reads as before. The three ``__str__`` methods of those modules that return ``pformat(...)``
itself are given the real one. :func:`log_argument_only_problems` checks, from the module's source,
that every other use is a log argument: a new use elsewhere stops the install (and the inventory
test) rather than changing what it returns.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pprint import pformat

# module: the classes whose __str__ returns pformat(...) itself (given the real pformat back)
MODULES = {
    "crossbar.router.session": (),
    "crossbar.router.router": (),
    "crossbar.worker.proxy": ("ProxyRoute", "ProxyConnection"),
    "autobahn.websocket.protocol": ("Timings",),
}
LOG_METHODS = frozenset({"trace", "debug", "info", "warn", "warning", "error", "critical", "failure"})


class Deferred:
    """pformat(value), computed when (and each time) a log line is written."""

    __slots__ = ("_args", "_kwargs")

    def __init__(self, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs

    def __str__(self) -> str:
        return pformat(*self._args, **self._kwargs)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _is_log_call(node: ast.AST) -> bool:
    """``log.<level>(...)`` or ``<anything>.log.<level>(...)``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS):
        return False
    logger = node.func.value
    return (isinstance(logger, ast.Name) and logger.id == "log") or (
        isinstance(logger, ast.Attribute) and logger.attr == "log")  # fmt: skip


def log_argument_only_problems(module_name: str, str_classes: tuple[str, ...]) -> list[str]:
    """Where `module_name` calls pformat other than as (part of) a keyword argument of a
    ``log.<level>(...)`` call or in the ``__str__`` of `str_classes`; empty when it holds."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if _is_log_call(node):
            for keyword in node.keywords:
                allowed.update(id(n) for n in ast.walk(keyword.value))
        elif isinstance(node, ast.ClassDef) and node.name in str_classes:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__str__":
                    allowed.update(id(n) for n in ast.walk(item))
    return [
        f"{module_name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "pformat"
        and id(node) not in allowed
    ]  # fmt: skip


def install() -> None:
    problems = [p for name, classes in MODULES.items() for p in log_argument_only_problems(name, classes)]
    if problems:
        raise RuntimeError(f"pformat is used other than as a log argument at {', '.join(problems)}")
    for name, classes in MODULES.items():
        module = importlib.import_module(name)
        if module.__dict__.get("pformat") is Deferred:
            continue
        for class_name in classes:
            getattr(module, class_name).__str__ = _real_str
        module.pformat = Deferred


def _real_str(self) -> str:
    """The replaced __str__ methods, with the real pformat: ProxyRoute and ProxyConnection print
    ``pformat(self.marshal())``, Timings ``pformat(self._timings)``."""
    marshal = getattr(self, "marshal", None)
    return pformat(marshal() if marshal is not None else self._timings)
