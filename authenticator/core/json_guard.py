"""The one JSON guard for what clients send (token headers and claims, /publish bodies, login
bodies, WAMP messages): what Python's parser would accept but must not be.

- Nesting, counted before json.loads: the C parser recurses once per level, and in a process whose
  recursion limit something raised (Crossbar imports py_ecc, which sets 100,000) a deep document
  overflows the C stack and kills the process instead of raising RecursionError. Each caller sets
  its own limit (a token header is flat, a published payload may nest).
- NaN, Infinity and numbers beyond the float range: not JSON, and other clients cannot parse them.
- Lone UTF-16 surrogates: nothing can write them as UTF-8 again.

Pure: authenticator/patches/finite_json.py puts the last two into Autobahn's JSON serializer.
"""

from __future__ import annotations

import math
import re


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than `limit` outside JSON strings, checked before json.loads.
    Linear and without recursion; the counting loop only sees the brackets (~3 ms for 64 KiB)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _JSON_STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET):
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


# A string, or an unterminated one to the end of the body: every match that starts at a quote
# succeeds (possessive, no backtracking; a lone trailing backslash too), so the scan is linear
# whatever the body. (A pattern that can fail after scanning far, like "(?:[^"\\]|\\.)*", is
# retried from every later quote: quadratic, 17 s for 64 KiB of escaped quotes.)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_OPENING = frozenset(b"[{")
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class NonFiniteNumber(ValueError):  # noqa: N818 - its name is what the sender reads in the close reason
    """A NaN or an infinity where JSON has only finite numbers. The message is short: Autobahn puts
    it into a WebSocket close reason, which holds 123 bytes. `value`: what was read, as written."""

    def __init__(self, message: str, value: str = "") -> None:
        super().__init__(message)
        self.value = value


class LoneSurrogate(ValueError):  # noqa: N818 - its name is what the sender reads in the close reason
    """A string (a value or a key) holding half of a UTF-16 surrogate pair: the JSON escape
    ``"\\ud800"`` on its own. Python's JSON parser reads it into a ``str`` that is not Unicode, and
    that nothing can write as UTF-8 again: sent on, it broke every send of the message (the
    broker's fan-out stopped at the first JSON peer, behind the proxies the CBOR link failed). The
    message, with the class name before it, is what the close reason shows: ``LoneSurrogate
    \\ud800 is not valid Unicode: send valid UTF-8`` (ASCII, whatever the surrogate)."""

    def __init__(self, character: str) -> None:
        self.value = f"\\u{ord(character):04x}"
        super().__init__(f"{self.value} is not valid Unicode: send valid UTF-8")


_SURROGATE = re.compile("[\ud800-\udfff]")
# What a text or body must contain for a parsed string to hold a lone surrogate: its escape, or
# (bytes that json.loads decodes with "surrogatepass") its UTF-8-like encoding. Most messages
# contain neither, and are not walked.
_MAYBE_SURROGATE_TEXT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_MAYBE_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def may_hold_surrogates(raw: str | bytes) -> bool:
    """Whether parsing `raw` as JSON could give a string with a lone surrogate (a cheap scan)."""
    pattern = _MAYBE_SURROGATE_BYTES if isinstance(raw, bytes | bytearray) else _MAYBE_SURROGATE_TEXT
    return pattern.search(raw) is not None


def refuse_lone_surrogates(document: object) -> None:
    """Raise LoneSurrogate for the first string (value or key, at any depth) of a parsed JSON
    document that holds a surrogate code point. Python's parser joins a valid pair into one
    character, so every surrogate left is a lone one. Iterative: any depth, no recursion."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise LoneSurrogate(found.group())
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)


def refuse_constant(name: str):
    """``parse_constant`` for json.loads: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON."""
    raise NonFiniteNumber(f"{name} is not JSON: send null or a string", name)


def finite_float(text: str) -> float:
    """``parse_float`` for json.loads: a number beyond the float range (``1e999``) is refused
    instead of read as infinity, which would be written back as ``Infinity``."""
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 12 else f"{text[:9]}..."
        raise NonFiniteNumber(f"{shown} is out of range: send a string", shown)
    return value
