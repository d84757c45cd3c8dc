"""Text from outside (a client, a token, a header, an exception's words) made fit for one log line.

Pure: no Twisted, no Crossbar. The worker's log observer (authenticator/patches/hardening.py) passes the
rendered line, the traceback of a failure and the values the controller renders through
:func:`for_log`; code that builds a message from client text (authenticator/core/unknown_keys.py) may call
:func:`escape` itself.

:func:`for_log` does four things, in this order:

- colour codes removed: Crossbar colours parts of its own lines with SGR sequences (``ESC [ 33 m``,
  autobahn.util.hlval) and its controller removes them again unless colour is on. Removed here
  (from client text too: removing is as safe as escaping), so that Crossbar's lines do not fill
  with escaped colour codes; a worker's lines are therefore never coloured.
- :func:`redact`: every compact JWS and every Cookie/Authorization header value replaced, in the
  whole text, before anything is cut: a cut inside a token (say inside its header, so that what
  is left no longer starts with ``eyJ``) would leave the rest of it, signature included,
  unrecognisable and in the log. Redaction is linear in the text.
- cut to `limit` characters (head and tail kept, and how many characters were cut), and only then
- :func:`escape`: every character that could end a line, start a new one, drive a terminal or
  hide text is written as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``, ``\\U000e0041``).
  Without it a client could put a complete fake line into the node log (a URI with ``\\n`` and
  ``... [Router 4242] authentication accepted: authid=root``), or move the cursor, clear the
  screen or set the title of the terminal an operator reads the log in. Printable text,
  backslashes included, is left as it is. Escaping after the cut keeps a value full of line
  breaks cheap; an escaped text longer than `limit` is cut again, between escapes (there is no
  token left to cut).

:func:`clip` (used by code that bounds a value it logs or answers with) redacts before it cuts too.
"""

from __future__ import annotations

import re
import unicodedata

# The longest value a log event may carry into the node log. Client-controlled text (a URI, a
# protocol error quoting a message, a traceback of a parse) must not make a log line large: the
# controller relays worker lines in time quadratic in their length while the worker blocks on
# the full pipe.
MAX_LOGGED_VALUE = 2000

# What escape() rewrites: every character of the Unicode categories Cc (controls: C0, DEL, C1,
# among them every line break but the separators, ESC which starts every terminal control
# sequence, and the one-byte CSI and OSC), Cf (format characters: zero-width ones, the soft
# hyphen, bidirectional embeddings, overrides and isolates with which "authid=nimda" reads
# "authid=admin", tag characters that can carry hidden ASCII), Zl and Zp (line and paragraph
# separators), Cs (lone surrogates: they cannot be written as UTF-8), Co (private use) and Cn
# (unassigned: whatever they become in a later Unicode version). These are exactly the characters
# str.isprintable() refuses, except the spaces (Zs: the no-break space and its kind), which are
# kept; str.isprintable() is the fast path.
_SPACES = frozenset(c for c in map(chr, range(0x3001)) if unicodedata.category(c) == "Zs")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 controls and DEL, each replaced where present: a scan per character (memchr) is cheaper than
# str.translate with a mapping to longer strings.
_ASCII_ESCAPES = tuple((chr(code), _NAMED.get(chr(code), f"\\x{code:02x}")) for code in (*range(0x20), 0x7F))
_NON_ASCII = re.compile("[^\x00-\x7f]+")
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
# A header value runs to its closing quote (a quote escaped with a backslash, as repr() writes it,
# does not close it), or, when the text ends inside it, to the end of the text: every match that
# starts succeeds (possessive, no backtracking), so the scan stays linear whatever the text (a
# value that may fail after scanning far is retried from every later "'cookie': '": quadratic).
# Line breaks do not end it: redaction sees the raw text, and a value with a line break in it
# (escaped later) is still one value.
_SECRET_HEADER = re.compile(
    r"""(b?['"](?:set-)?(?:cookie|authorization)['"]\s*:\s*b?)(['"])(?:\\.|(?!\2)[^\\])*+(?:\2|\\?\Z)""",
    re.IGNORECASE | re.DOTALL,
)
# The letters outside ASCII that re.IGNORECASE matches to a letter of "cookie" or "authorization".
_ODD_CASES = (("\u0130", "i"), ("\u0131", "i"), ("\u212a", "k"))
REDACTED = "<redacted>"
# A header value still open at the end of a head kept by a cut (its value is redacted already, but
# its closing quote was cut off): dropped from the head, or a later redaction of the line (the
# observer's, of a value cut here first) would take everything after it for the value.
_OPEN_HEADER_AT_THE_END = re.compile(r"""b?['"](?:set-)?(?:cookie|authorization)['"]\s*:\s*b?['"][^'"]*\Z""", re.I)


def escape(text: str) -> str:
    """The text with every control, line-breaking, invisible, private-use, unassigned or
    unencodable character written as an escape (``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``,
    ``\\U000e0041``); the same string if it has none."""
    if text.isprintable():  # C, and no copy: the common case
        return text
    for char, escaped in _ASCII_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    if text.isascii():
        return text
    return _NON_ASCII.sub(_escaped_run, text)


def _escaped_run(found: re.Match) -> str:
    run = found.group()
    if run.isprintable():
        return run
    return "".join(char if char.isprintable() or char in _SPACES else _code(char) for char in run)


def _code(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def has_unsafe(text: str) -> bool:
    """Whether escape() would change the text."""
    return escape(text) != text


def clip(value: object, limit: int = MAX_LOGGED_VALUE) -> str:
    """Client-controlled text for a log line (its repr unless it is a str), redacted, then cut to
    at most `limit` characters (head and tail), saying how many were cut. Not escaped."""
    text = redact(without_colours(value if isinstance(value, str) else repr(value)))
    if len(text) <= limit:
        return text
    half = limit // 2
    head, tail = _head(text, half), text[-half:] if half else ""
    return _cut(head, len(text) - len(head) - len(tail), tail)


def _head(text: str, length: int) -> str:
    head = text[:length]
    if _may_name_a_secret_header(head):
        open_header = _OPEN_HEADER_AT_THE_END.search(head)
        if open_header is not None:
            return head[: open_header.start()]
    return head


def _cut(head: str, cut: int, tail: str) -> str:
    # Spaces around the marker: neither the head's end nor the tail's start can join a dot of the
    # marker (or each other) into something that looks like a token.
    return f"{head} ...[{cut} characters cut]... {tail}"


def redact(text: str) -> str:
    """The text with every compact JWS and every Cookie/Authorization header value replaced."""
    if "eyJ" in text:
        text = _RUN.sub(_redact_run, text)
    if _may_name_a_secret_header(text):
        text = _SECRET_HEADER.sub(rf"\1\2{REDACTED}\2", text)
    return text


def _may_name_a_secret_header(text: str) -> bool:
    """Whether the text may hold what _SECRET_HEADER matches: a quick test (str.lower and two
    searches take a twentieth of the time of a case-insensitive regex)."""
    folded = text
    if not text.isascii():
        for odd, letter in _ODD_CASES:
            if odd in folded:
                folded = folded.replace(odd, letter)
    folded = folded.lower()
    return "ookie" in folded or "uthorization" in folded


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
    redacted, cut to `limit` characters, escaped, and, when escaping made it longer than `limit`,
    cut again between escapes. Redaction comes before any cut (a token cut in two is no longer
    recognised); escaping after the first cut (a long text of line breaks is escaped only as far
    as it is shown)."""
    text = redact(without_colours(value if isinstance(value, str) else repr(value)))
    if len(text) <= limit:
        escaped = escape(text)
        if len(escaped) <= limit:
            return escaped
    half = limit // 2
    head, head_kept = _escaped_part(_head(text, half), half, _prefix)
    tail, tail_kept = _escaped_part(text[-half:] if half else "", half, _suffix)
    return _cut(head, len(text) - head_kept - tail_kept, tail)


def _prefix(text: str, length: int) -> str:
    return text[:length]


def _suffix(text: str, length: int) -> str:
    return text[len(text) - length :]


def _escaped_part(raw: str, room: int, part) -> tuple[str, int]:
    """The escaped form of the longest part (prefix or suffix) of `raw` whose escaped form fits in
    `room` characters, and how many characters of `raw` it shows. Each character escapes on its
    own, so the escaped form of a part is a part of the escaped form: the cut never splits an
    escape."""
    escaped = escape(raw)
    if len(escaped) <= room:
        return escaped, len(raw)
    low, high = 0, min(len(raw), room)
    while low < high:  # the longest part that fits: a binary search, each step one escape
        middle = (low + high + 1) // 2
        if len(escape(part(raw, middle))) <= room:
            low = middle
        else:
            high = middle - 1
    return escape(part(raw, low)), low
