"""The one change the Python kits make to Autobahn: a live EVENT's `x_position` detail (set by the
router on every event of a topic that keeps history, contract.EVENT_POSITION_DETAIL) reaches the
kit. Autobahn's Event.parse keeps only the details it knows, and EventDetails has no room for
others, so a handler never sees it.

How, in the kit's own connections only (nothing global, nothing in the application's other
Autobahn sessions): each serializer of the kit's WampWebSocketClientFactory gets a message-type
map of its own whose EVENT entry parses with Autobahn's Event.parse and notes the detail aside,
keyed by (subscription, publication), where the kit's handler of that subscription finds it
(EventDetails names both).

Autobahn internals this relies on (authenticator/patches/inventory.py, entry "kit-event-positions"):
`Serializer.MESSAGE_TYPE_MAP` (looked up on the instance by unserialize), `Event.parse`,
and `WampWebSocketFactory._serializers` (the instances a connection copies with copy.copy). The kit runs in
the application's process, without the router's guard, so it checks the installed Autobahn itself:
on a version the hook was not verified on it says so, loudly, once, and does without it. The
recovery then gets no position with live events and reads every one of them from the history
(recovery.py: an event without a position), slower but never silently unprotected.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections import OrderedDict

import txaio
from autobahn.wamp.message import Event
from autobahn.wamp.serializer import Serializer

from authenticator.contract import EVENT_POSITION_DETAIL

VERIFIED_AUTOBAHN = ("26.10.2",)  # the inventory's entry says the same (tests/unit/test_kit_event_positions.py)
# The router's variable (authenticator/patches/guard.py): naming the running version accepts it.
ACCEPT_VARIABLE = "CROSSBAR_JWT_ACCEPT_UNVERIFIED"
NOTED_AT_MOST = 1024  # positions noted and not yet picked up (a batch of EVENTs; never more in practice)

_verdict: bool | None = None


class _PositionNotes:
    """The EVENT entry of one connection's message-type map: Autobahn's Event.parse, and the
    x_position of each EVENT noted aside until its session picks it up."""

    def __init__(self) -> None:
        self._noted: OrderedDict[tuple[int, int], object] = OrderedDict()

    def parse(self, wmsg):
        event = Event.parse(wmsg)
        details = wmsg[3] if len(wmsg) > 3 and isinstance(wmsg[3], dict) else {}
        if EVENT_POSITION_DETAIL in details:
            self._noted[(event.subscription, event.publication)] = details[EVENT_POSITION_DETAIL]
            while len(self._noted) > NOTED_AT_MOST:
                self._noted.popitem(last=False)
        return event

    def position_of(self, subscription: int, publication: int):
        """The raw x_position of that EVENT (None: it had none, or it is long gone: the newest
        NOTED_AT_MOST are kept, for every handler of the EVENT to read)."""
        return self._noted.get((subscription, publication))


def keep_positions(factory) -> _PositionNotes | None:
    """Give the serializers of a kit factory (made for one connection) the EVENT entry that notes
    positions; the notes, or None where positions cannot be read (unverified Autobahn: warned)."""
    if not positions_readable():
        return None
    notes = _PositionNotes()
    for serializer in factory._serializers.values():
        table = getattr(serializer, "MESSAGE_TYPE_MAP", None)
        if isinstance(table, dict) and table.get(Event.MESSAGE_TYPE) is Event:
            serializer.MESSAGE_TYPE_MAP = {**table, Event.MESSAGE_TYPE: notes}
    return notes


def positions_readable(version_of=None, environ=None, log=None) -> bool:
    """Whether the installed Autobahn is one the hook was verified on (or the application accepted
    it by naming it in CROSSBAR_JWT_ACCEPT_UNVERIFIED, e.g. autobahn==26.11.0). Decided once per
    process, and said once: a warning when unverified."""
    global _verdict
    if _verdict is None or version_of is not None:
        _verdict = _decide(version_of or _installed, os.environ if environ is None else environ, log)
    return _verdict


def _decide(version_of, environ, log) -> bool:
    version = version_of("autobahn") or "(not installed)"
    shape = isinstance(Serializer.MESSAGE_TYPE_MAP, dict) and Serializer.MESSAGE_TYPE_MAP.get(36) is Event
    if version in VERIFIED_AUTOBAHN and shape:
        return True
    log = log or txaio.make_logger()  # here: the framework is chosen by the time a client connects
    accepted = {part.strip().lower() for part in environ.get(ACCEPT_VARIABLE, "").split(",")}
    if shape and f"autobahn=={version}".lower() in accepted:
        log.warn(
            "crossbar-jwt: the kit reads event positions on autobahn {version}, on which it was not verified "
            "(accepted by {variable}); verified: {verified}",
            version=version, variable=ACCEPT_VARIABLE, verified=", ".join(VERIFIED_AUTOBAHN),
        )  # fmt: skip
        return True
    log.warn(
        "crossbar-jwt: WARNING: the kit cannot read event positions on autobahn {version} (verified: {verified}). "
        "Recovering subscriptions still deliver every event once and in order, but read each live event "
        "from the router's history (one call per burst of events) instead of placing it by its position. "
        "Install a verified autobahn, or accept this one with {variable}=autobahn=={version}",
        version=version, verified=", ".join(VERIFIED_AUTOBAHN), variable=ACCEPT_VARIABLE,
    )  # fmt: skip
    return False


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
