"""Messages for configuration keys that are not known: name each one, and the nearest known key.

A key may come from a client (the body of ``POST /publish``): the message quotes it escaped
(authenticator/core/logtext.py), as it goes into a log line and an HTTP answer.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from authenticator.core.logtext import escape


def unknown_keys(where: str, given: Iterable[object], known: Iterable[str]) -> str | None:
    """None when every key in `given` is known; else one sentence naming the unknown keys, each
    with the known key it most likely misspells ("did you mean"), and the keys `where` takes."""
    known = list(known)
    unknown = sorted(str(key) for key in given if key not in known)
    if not unknown:
        return None
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        shown = escape(key[:64])
        named.append(f"'{shown}' (did you mean '{close[0]}'?)" if close else f"'{shown}'")
    return f"{where} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(named)}; it takes {', '.join(known)}"
