"""Patch 'forwarded-yields': a callee's YIELD may not name another callee."""

from __future__ import annotations

from collections.abc import Callable

from authenticator.core.logtext import clip


def drop_forwarded_yields(forwards: Callable[[str], bool], warn: Callable[..., None]) -> None:
    """A callee's YIELD may not name another callee.

    Crossbar 26 discloses to the caller the callee that the YIELD's ``forward_for`` names
    (router/dealer.py, processYield) — meant for router links relaying a result — and a YIELD is
    never authorized, so any session allowed to register could answer as ``root``/``admin``. Only
    sessions whose role `forwards` (router links, on static roles) keep it; for every other
    session the router drops it, so the caller sees the real callee.
    """
    from crossbar.router.dealer import Dealer

    if getattr(Dealer.processYield, "_crossbar_jwt_drops_forwarded_yields", False):
        return
    process_yield = Dealer.processYield

    def process_yield_of_the_real_callee(self, session, yield_):
        if yield_.forward_for and not forwards(session._authrole):
            warn("authenticator: dropped forward_for of a YIELD from session={sid} authid={authid} role={role}: "
                 "a callee cannot answer as another session", sid=session._session_id,
                 authid=clip(session._authid, 200), role=clip(session._authrole, 200))  # fmt: skip
            yield_.forward_for = None
        return process_yield(self, session, yield_)

    process_yield_of_the_real_callee._crossbar_jwt_drops_forwarded_yields = True
    Dealer.processYield = process_yield_of_the_real_callee
