"""Patch 'debug-formatting' (authenticator/patches/debug_formatting.py): debug log arguments of
Crossbar and Autobahn are pretty-printed only when a line is written, and nothing else changes."""

import sys
from pprint import pformat

from authenticator.patches.debug_formatting import MODULES, Deferred, log_argument_only_problems
from authenticator.patches.hardening import harden_router_worker


def test_every_pformat_of_the_patched_modules_is_a_log_argument_or_a_replaced_str():
    for name, classes in MODULES.items():
        assert log_argument_only_problems(name, classes) == [], name


def test_a_pformat_whose_result_is_used_otherwise_is_found(tmp_path, monkeypatch):
    (tmp_path / "uses_pformat.py").write_text(
        "from pprint import pformat\n"
        "class Shown:\n"
        "    def describe(self, log, value):\n"
        "        log.debug('{v}', v=pformat(value) if value else None)\n"
        "        return pformat(value)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert log_argument_only_problems("uses_pformat", ("Shown",)) == ["uses_pformat:5"]
    finally:
        sys.modules.pop("uses_pformat", None)


def test_once_a_worker_is_hardened_a_debug_value_is_formatted_when_written_and_str_methods_still_return_text():
    from autobahn.websocket import protocol
    from crossbar.router import router, session
    from crossbar.worker import proxy

    harden_router_worker(lambda line: None)  # what every worker runs before its transports open
    value = {"authextra": {"roles": ["user", "admin"], "nested": list(range(30))}}
    for module in (session, router, proxy, protocol):
        kept = module.pformat(value)
        assert isinstance(kept, Deferred), module.__name__
        assert f"{kept}" == str(kept) == pformat(value)  # what a written log line shows: as before
    timings = protocol.Timings()
    timings.track("open")
    assert type(str(timings)) is str and str(timings) == pformat(timings._timings)
    route = proxy.ProxyRoute.__new__(proxy.ProxyRoute)
    route.marshal = lambda: value
    assert type(str(route)) is str and str(route) == pformat(value)
