"""Patch 'log-values': every event of a worker reaches the node log as one line of bounded,
escaped text without tokens, however it was logged (client text included)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sized
from string import Formatter

from authenticator.core.logtext import MAX_LOGGED_VALUE, clip, for_log


def require_bounded_log_values() -> None:
    """In a Crossbar worker, the log observer must be found and wrapped: otherwise client text
    reaches the node log unescaped and unbounded, so the worker does not start. Outside one (a
    component test), there is no such observer to wrap."""
    if bound_log_values() or not in_crossbar_worker():
        return
    from authenticator.config.stop import stop_for_configuration

    stop_for_configuration([
        "patch 'log-values': Crossbar's worker log observer (crossbar._logging.make_JSON_observer) was not found "
        "on the log publisher, so client text would reach the log unescaped. Install the versions constraints.txt "
        "pins (pip install -c constraints.txt -e .)."
    ])  # fmt: skip


def in_crossbar_worker() -> bool:
    """Whether this process is a worker Crossbar's controller started (python -m crossbar.worker.main)."""
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", None) == "crossbar.worker.main"


def bound_log_values() -> bool:
    """Wrap Crossbar's worker log observer so that every event reaches the node log as one line of
    bounded, escaped text without tokens (:class:`_BoundedObserver`).

    Crossbar's worker writes every log event as JSON to its controller through one observer on
    Twisted's global log publisher (crossbar._logging.make_JSON_observer). Returns whether it was
    found (and is now wrapped, once).
    """
    from twisted.logger import globalLogPublisher

    observers = list(getattr(globalLogPublisher, "_observers", ()))
    found = False
    for observer in observers:
        if isinstance(observer, _BoundedObserver):
            return True  # already wrapped
        if getattr(observer, "__qualname__", "") == "make_JSON_observer.<locals>._make_json":
            globalLogPublisher.removeObserver(observer)
            globalLogPublisher.addObserver(_BoundedObserver(observer))
            found = True
    return found


# A whole rendered line, and the traceback of a failure, may be longer than one value (several
# values, a deep stack), but are bounded too.
MAX_LOGGED_LINE = 4 * MAX_LOGGED_VALUE
# The widest field a format may ask for, and its longest precision: "{log_time:>200000000}" (a
# client's words in a format built with an f-string) would render 200 MB. A format that asks for
# more, or whose spec is itself a replacement field (its width is known only while rendering), is
# not rendered: the line shows the format itself.
MAX_FORMAT_WIDTH = MAX_LOGGED_LINE
_NUMBER = re.compile(r"\d+")
# Keys of an event that are the logging system's own, not values to render: passed on as they are.
_STRUCTURAL = frozenset({"log_level", "log_logger", "log_source", "log_time"})
# Values Crossbar's controller reads from every event (crossbar/_logging.py: the source shown with
# the line, the trace flag at debug): passed on, made safe. The others only for an event with a
# log_category, which the controller renders from the category's format and the values; for any
# other event it prints the text and nothing else of it.
_READ_BY_THE_CONTROLLER = frozenset({"log_namespace", "txaio_trace"})
# Keys the rendered text replaces: the format, the failure (its traceback is in the text) and a
# flattened event's pre-rendered fields.
_REPLACED = frozenset({"log_format", "log_failure", "failure", "log_flattened"})


class _BoundedObserver:
    """Stands between Twisted's log publisher and Crossbar's worker observer: every event it passes
    on renders as one line of escaped, bounded text without tokens, however it was logged.

    How Crossbar writes a worker's line (crossbar/_logging.py, make_JSON_observer; Crossbar
    26.10.1): the worker renders the event's format with its values (``formatEvent``), appends the
    failure's traceback after a line break, and sends that text *and every other value* of the
    event as JSON to the controller (crossbar/node/worker.py), which decodes it (``\\n`` in JSON
    is a newline again) and prints the text as it is; for an event with a ``log_category`` the
    controller renders the category's format with the values instead. So both are made safe here,
    before they leave the worker:

    - the text: rendered here from the event (values redacted and clipped first, so rendering stays
      bounded; a format asking for a field wider than MAX_FORMAT_WIDTH is not rendered), then
      redacted, clipped to MAX_LOGGED_LINE and escaped (:func:`authenticator.core.logtext.for_log`:
      redacted before any cut). This covers client text in a value, in a format string built with
      an f-string (Autobahn and Crossbar do that), and in whatever ``str()`` of an object gives.
      The failure's traceback (the exception's words are often the client's) is made safe the
      same way and appended to the text on the same line: one event, one line. The event passed on
      carries the text as its format (braces doubled), and no failure.
    - the values: only those the controller reads. For an event with a ``log_category``, all of
      them: strings redacted, clipped and escaped; numbers, booleans and None as they are; anything
      else as its safe repr (which is what Crossbar's JSON encoder would send). For any other
      event, only its namespace and trace flag: the controller prints the text alone, so the
      others would cost their repr here and their JSON in both processes for nothing.

    Events below the worker's log level are passed on untouched: Crossbar's observer drops them
    first thing, and they should cost nothing here either.
    """

    def __init__(self, inner) -> None:
        from twisted.logger import LogLevel
        from txaio import get_global_log_level
        from txaio.tx import log_levels

        self._inner = inner
        self._info = LogLevel.info
        self._rank = log_levels.index
        self._threshold = lambda: log_levels.index(get_global_log_level())

    def __call__(self, event: dict) -> None:
        level = event.get("log_level", self._info)
        try:
            dropped = self._rank(level.name) > self._threshold()
        except (AttributeError, ValueError):
            dropped = False  # an odd level: Crossbar's observer decides
        if dropped:
            self._inner(event)
            return
        try:
            safe = _one_safe_line(event)
        except Exception as error:  # noqa: BLE001 - Twisted drops an observer that raises: never raise
            safe = {key: event[key] for key in _STRUCTURAL if key in event}
            safe["log_format"] = f"(an event that could not be made safe to log: {type(error).__name__})"
        self._inner(safe)


def _one_safe_line(event: dict) -> dict:
    text = for_log(_rendered(event), MAX_LOGGED_LINE)
    failure = event.get("log_failure")
    if failure is not None:
        traceback = for_log(_traceback_of(failure), MAX_LOGGED_LINE)
        text = f"{text} {traceback}" if text else traceback
    passed = event if event.get("log_category") else _READ_BY_THE_CONTROLLER
    safe = {key: event[key] if key in _STRUCTURAL else _safe_value(event[key])
            for key in passed if key in event and key not in _REPLACED}  # fmt: skip
    for key in _STRUCTURAL:
        if key in event:
            safe[key] = event[key]
    safe["log_format"] = text.replace("{", "{{").replace("}", "}}")
    return safe


def _rendered(event: dict) -> str:
    """The event's format rendered with bounded values (a 60 KB URI must not be rendered whole;
    each is redacted before it is cut) but otherwise as logged: a format may read attributes
    ("{log_failure.value}") or use !r. A format asking for a field too wide is shown as it is."""
    from twisted.logger import formatEvent

    refused = _too_wide(event.get("log_format"))
    if refused is not None:
        return f"(format not rendered: {refused}) {event['log_format']}"
    bounded = {key: clip(value) if _too_long(value) else value for key, value in event.items()}
    return formatEvent(bounded)


def _too_wide(log_format: object) -> str | None:
    """Why a format cannot be rendered in bounded time and space (a width or precision over
    MAX_FORMAT_WIDTH, or one given by a replacement field), or None."""
    if not isinstance(log_format, str) or ":" not in log_format:
        return None
    try:
        fields = list(Formatter().parse(log_format))
    except ValueError:
        return None  # formatEvent says it cannot be formatted
    for _literal, _field, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec:
            return "a width or precision given by a field"
        if any(len(number) > 9 or int(number) > MAX_FORMAT_WIDTH for number in _NUMBER.findall(spec)):
            return f"a width or precision over {MAX_FORMAT_WIDTH}"
    return None


def _safe_value(value: object) -> object:
    if isinstance(value, str):
        return for_log(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    try:
        text = repr(value)
    except Exception as error:  # noqa: BLE001 - an object whose repr fails is still logged
        text = f"<{type(value).__name__}, repr failed: {type(error).__name__}>"
    return for_log(text)


def _traceback_of(failure) -> str:
    try:
        return failure.getTraceback().rstrip("\n")
    except Exception as error:  # noqa: BLE001 - a traceback that cannot be formatted is still logged
        return f"(no traceback: {type(error).__name__}) {failure!r}"


def _too_long(value: object) -> bool:
    if isinstance(value, str | bytes):
        return len(value) > MAX_LOGGED_VALUE
    return isinstance(value, Sized) and not isinstance(value, dict) and len(value) > MAX_LOGGED_VALUE
