"""Every change this project makes to Crossbar, Autobahn and Twisted internals, in one place.

:mod:`.inventory` lists each patch: the symbols it replaces, why, the versions it was verified on
and the test that fails without it. :mod:`.guard` checks the inventory once per worker process,
before any client byte is parsed: on a version not verified, or with a target gone, the worker
refuses to start with one line per patch, unless the operator accepted exactly those versions in
``CROSSBAR_JWT_ACCEPT_UNVERIFIED`` (logged at every start).
"""

from .guard import ACCEPT_VARIABLE, Guard, PatchProblem, check
from .inventory import PATCHES, Patch

__all__ = ["ACCEPT_VARIABLE", "PATCHES", "Guard", "Patch", "PatchProblem", "check"]
