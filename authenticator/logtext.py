"""Text from outside (a client, a token, a header, an exception's words) made fit for one log line.

Pure: no Twisted, no Crossbar. The worker's log observer (authenticator/hardening.py) passes every
value of every event, the rendered line and the traceback of a failure through :func:`for_log`;
code that builds a message from client text (authenticator/suggest.py) may call :func:`escape`
itself.

Four things, in this order:

- colour codes removed: Crossbar colours parts of its own lines with SGR sequences (``ESC [ 33 m``,
  autobahn.util.hlval) and its controller removes them again unless colour is on. Removed here
  (from client text too: removing is as safe as escaping), so that Crossbar's lines do not fill
  with escaped colour codes; a worker's lines are therefore never coloured.

- :func:`escape`: every character that could end a line, start a new one or drive a terminal is
  written as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``). Without it a client could put a
  complete fake line into the node log (a URI with ``\\n`` and ``... [Router 4242] authentication
  accepted: authid=root``), or move the cursor, clear the screen or set the title of the terminal
  an operator reads the log in. Printable text, backslashes included, is left as it is.
- :func:`clip`: at most a number of characters, saying how many were cut.
- :func:`redact`: every compact JWS and every Cookie/Authorization header value replaced.
"""

from __future__ import annotations

import re

# The longest value a log event may carry into the node log. Client-controlled text (a URI, a
# protocol error quoting a message, a traceback of a parse) must not make a log line large: the
# controller relays worker lines in time quadratic in their length while the worker blocks on
# the full pipe.
MAX_LOGGED_VALUE = 2000

# What escape() rewrites. Everything str.splitlines() breaks at is in here (\n \r \v \f \x1c-\x1e
# \x85 \u2028 \u2029), and more:
# - C0 controls and DEL (\x00-\x1f, \x7f): line breaks, backspace, ESC (which starts every
#   terminal control sequence: cursor movement, erase, OSC window titles), BEL, NUL;
# - C1 controls (\x80-\x9f): NEL (\x85) and the one-byte forms of CSI (\x9b), OSC (\x9d), DCS, ST;
# - line and paragraph separators (\u2028, \u2029);
# - lone surrogates (\ud800-\udfff): they cannot be written as UTF-8 at all;
# - characters that hide or reorder text without being seen: zero-width ones (\u200b-\u200f,
#   \u2060-\u2064, \ufeff), the Arabic letter mark (\u061c) and the bidirectional embeddings,
#   overrides and isolates (\u202a-\u202e, \u2066-\u2069), with which "authid=nimda" reads
#   "authid=admin".
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Select Graphic Rendition: colour, bold, reset. Nothing else (no cursor movement, no erase).
_SGR = re.compile("\x1b\\[[0-9;]*m")

# Tokens in log lines. Crossbar logs each new session's authextra at info, and behind proxies that
# holds every header of the client's upgrade (Cookie, Authorization: a token); at debug it logs
# WAMP messages, tickets included. Whatever Crossbar logs, a JWS in compact form (its header is
# JSON, so its base64url starts with "eyJ") and the values of Cookie, Set-Cookie and
# Authorization headers (also as the bytes a proxy's reverseproxy path logs) are replaced.
# A JWS is "eyJ" and base64url, a dot, base64url, a dot, base64url: it lies within one run of
# base64url characters and dots, so runs are matched (possessive: each character read once) and
# searched in order by _redact_run. (The pattern eyJ[...]*\.[...]*\.[...]* itself is quadratic:
# every "eyJ" of a long run without dots was tried, and scanned the run to its end.)
_RUN = re.compile(r"[A-Za-z0-9_.-]++")
# A header value runs to its closing quote, or, when the text was cut inside it, to the end of the
# text or line: every match that starts succeeds (possessive, no backtracking), so the scan stays
# linear whatever the text (a value that may fail after scanning far is retried from every later
# "'cookie': '": quadratic).
_SECRET_HEADER = re.compile(
    r"""(b?['"](?:set-)?(?:cookie|authorization)['"]\s*:\s*b?)(['"])(?:(?!\2)[^\n])*+(?:\2|(?=\n)|\Z)""",
    re.IGNORECASE,
)
_HEADER_HINT = re.compile("ookie|uthorization", re.IGNORECASE)
REDACTED = "<redacted>"


def escape(text: str) -> str:
    """The text with every control, line-breaking, invisible or unencodable character written as
    an escape (``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``); unchanged if it has none."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escaped, text)


def _escaped(found: re.Match) -> str:
    char = found.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_unsafe(text: str) -> bool:
    """Whether escape() would change the text."""
    return _UNSAFE.search(text) is not None


def clip(value: object, limit: int = MAX_LOGGED_VALUE) -> str:
    """Client-controlled text for a log line: at most `limit` characters, and says it was cut."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...[{len(text) - limit} characters cut]...{text[-limit // 2 :]}"


def redact(text: str) -> str:
    """The text with every compact JWS and every Cookie/Authorization header value replaced."""
    if "eyJ" in text:
        text = _RUN.sub(_redact_run, text)
    if _HEADER_HINT.search(text) is not None:
        text = _SECRET_HEADER.sub(rf"\1\2{REDACTED}\2", text)
    return text


def without_colours(text: str) -> str:
    """The text without SGR sequences (colour, bold, reset)."""
    return _SGR.sub("", text) if "\x1b[" in text else text


def _redact_run(found: re.Match) -> str:
    """A run of base64url characters and dots with every JWS in it replaced: from its leftmost "eyJ"
    that has two dots after it, through the third segment (to the next dot or the run's end)."""
    run = found.group()
    if "eyJ" not in run:
        return run
    kept, pos = [], 0
    while (start := run.find("eyJ", pos)) >= 0:
        first = run.find(".", start)
        second = run.find(".", first + 1) if first >= 0 else -1
        if second < 0:
            break  # a later "eyJ" has even fewer dots after it
        end = run.find(".", second + 1)
        end = len(run) if end < 0 else end
        kept += [run[pos:start], REDACTED]
        pos = end
    kept.append(run[pos:])
    return "".join(kept)


def for_log(value: object, limit: int = MAX_LOGGED_VALUE) -> str:
    """A value (its repr unless it is a str) as it may appear in a log line: without colour codes,
    escaped, then clipped to `limit` characters, then redacted (a token cut by the clip keeps its
    dots, and is still matched; the redaction scans a bounded text)."""
    text = value if isinstance(value, str) else repr(value)
    return redact(clip(escape(without_colours(text)), limit))
