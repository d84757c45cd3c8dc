"""Text from outside in a log line: one line, nothing a terminal obeys, bounded, no token
(authenticator/logtext.py); and the worker's log observer that applies it to every event
(authenticator/hardening.py), with Crossbar's own JSON observer and the controller's rendering."""

from __future__ import annotations

import io
import json
import re
import time
import unicodedata

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from authenticator.logtext import MAX_LOGGED_VALUE, REDACTED, clip, escape, for_log, has_unsafe, redact

FAKE = "2026-01-01T00:00:00+0000 [Router 4242] authentication accepted: authid=root role=admin"
# Everything str.splitlines() breaks a line at.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# What a terminal obeys, and what hides or reorders text.
TERMINAL = "\x00\x07\x08\x1b\x7f\x90\x9b\x9c\x9d"
INVISIBLE = "\u061c\u200b\u200e\u200f\u202a\u202e\u2060\u2066\u2069\ufeff"
# Categories no escaped text may hold: controls, line/paragraph separators, surrogates.
FORBIDDEN_CATEGORIES = {"Cc", "Zl", "Zp", "Cs"}
EXAMPLES = settings(max_examples=1000, derandomize=True, database=None, deadline=None)


def is_safe(text: str) -> bool:
    return (
        len(text.splitlines()) <= 1
        and not any(unicodedata.category(ch) in FORBIDDEN_CATEGORIES for ch in text)
        and not any(ch in INVISIBLE for ch in text)
    )


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("\t", "\\t"),
        ("\x1bM", "\\x1bM"),  # reverse index: the cursor moves up a line
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC: the terminal's title
        ("\x08\x08\x08", "\\x08\\x08\\x08"),
        ("\x00", "\\x00"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\x9b2J", "\\x9b2J"),  # the one-byte CSI
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\ud800", "\\ud800"),
        ("admin\u202e", "admin\\u202e"),
        ("\ufeffroot", "\\ufeffroot"),
    ],
)
def test_each_kind_of_dangerous_character_is_written_as_an_escape(raw, escaped):
    assert escape(raw) == escaped


def test_a_fake_line_stays_inside_the_line_that_quotes_it():
    quoted = escape(f'invalid value "realm1\n{FAKE}"')
    assert quoted.splitlines() == [quoted] and f"realm1\\n{FAKE}" in quoted


def test_printable_text_is_left_as_it_is():
    text = 'C:\\path\\n is not a newline; "quotes", {braces}, é, 中文, 🦀, Zürich — ok'
    assert escape(text) is text


# Generated text leans on the characters that matter: every one of them, ASCII, and any other
# code point (surrogates included, which Hypothesis leaves out unless asked).
DANGEROUS = st.sampled_from(LINE_BREAKS + TERMINAL + INVISIBLE + "\ud800\udfff")
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.text(st.one_of(DANGEROUS, st.characters(min_codepoint=32, max_codepoint=126), ANY_CHAR), max_size=60)


def test_for_any_text_the_escaped_form_is_one_safe_line_and_printable_text_is_unchanged():
    reached = {"unsafe": 0, "printable": 0}

    @EXAMPLES
    @given(TEXT)
    def check(text):
        escaped = escape(text)
        assert is_safe(escaped), repr(escaped)
        escaped.encode("utf-8")  # no lone surrogate left
        assert escape(escaped) == escaped  # idempotent: escaping twice changes nothing
        if has_unsafe(text):
            event("had a dangerous character")
            reached["unsafe"] += 1
            assert escaped != text
        else:
            event("printable only")
            reached["printable"] += 1
            assert escaped == text

    check()
    # Both branches ran often: the property was checked on dangerous text, not only on easy text.
    assert reached["unsafe"] >= 300 and reached["printable"] >= 50, reached


def test_every_character_str_splitlines_breaks_at_is_escaped():
    everything = "".join(chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1)
    assert set(everything) == set(LINE_BREAKS)
    assert is_safe(escape(everything))


def test_every_control_character_is_escaped():
    controls = "".join(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc")
    assert len(controls) == 65 and is_safe(escape(controls))


# -- clip, redact, for_log -------------------------------------------------------------------------


def test_clip_keeps_head_and_tail_and_says_how_much_was_cut():
    assert clip("x" * 10, 10) == "x" * 10
    assert clip("a" * 30 + "b" * 30, 20) == "a" * 10 + "...[40 characters cut]..." + "b" * 10
    assert clip(b"\n", 100) == "b'\\n'"  # not a str: its repr


def test_for_log_escapes_clips_and_redacts():
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    text = for_log(f"ticket {token}\n{FAKE}" + "y" * 5000, 300)
    assert REDACTED in text and token not in text and "\n" not in text
    assert f"\\n{FAKE}" in text and len(text) < 350


def test_a_cookie_value_with_a_line_break_is_redacted_whole():
    # Raw, a header value stopped at the line break and its rest stayed in the line.
    headers = repr({"cookie": "a=1"}).replace("a=1", "a=1\nsecret-session-id")
    assert "secret" not in for_log(headers)
    assert for_log("{'Cookie': 'a=1\nsecret'}") == f"{{'Cookie': '{REDACTED}'}}"


def test_a_header_value_cut_by_the_clip_is_redacted_to_the_end():
    text = "{'authorization': 'Basic " + "s" * 5000 + "'}"
    assert "s" * 20 not in for_log(text, 200)


# The plain pattern of a compact JWS, which redact() implements in linear time.
PLAIN_JWS = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


@EXAMPLES
@given(st.text(st.sampled_from("eyJ.a-_ x'\""), max_size=60))
def test_redact_replaces_exactly_what_the_plain_jws_pattern_matches(text):
    assert redact(text) == PLAIN_JWS.sub(REDACTED, text)


def test_redaction_is_linear_in_the_text():
    hostile = "'cookie': '" * 100_000 + "eyJ" * 100_000
    started = time.perf_counter()
    redact(hostile)
    assert time.perf_counter() - started < 1.0


def test_colour_codes_are_removed_and_every_other_escape_sequence_is_escaped():
    crossbar = "<\x1b[33m\x1b[1mcrossbar\x1b[0m\x1b[33m\x1b[22m.router.protocol\x1b[0m>"
    assert for_log(crossbar) == "<crossbar.router.protocol>"
    assert for_log("\x1b[2J\x1b[H\x1bM\x1b]0;t\x07") == "\\x1b[2J\\x1b[H\\x1bM\\x1b]0;t\\x07"
    assert for_log("\x1b\x1b[0m[2J") == "\\x1b[2J"  # removing a colour code cannot build a raw sequence


# -- the worker's observer -----------------------------------------------------------------------


@pytest.fixture
def worker_log():
    """Crossbar's worker observer behind ours, at info; returns what the controller would print for
    each event: Crossbar's controller decodes the worker's JSON and renders the text (or, for an
    event with a log category, the category's format with the values)."""
    import txaio

    txaio.use_twisted()
    from crossbar._log_categories import log_categories
    from crossbar._logging import make_JSON_observer, record_separator
    from twisted.logger import Logger, formatEvent

    from authenticator.hardening import _BoundedObserver

    previous = txaio.get_global_log_level()
    txaio.set_global_log_level("info")
    pipe = io.StringIO()
    log = Logger(observer=_BoundedObserver(make_JSON_observer(pipe)), namespace="test")

    def printed() -> list[str]:
        lines = []
        for record in filter(None, pipe.getvalue().split(record_separator)):
            sent = json.loads(record)  # crossbar/node/worker.py
            text, _, _ = sent.pop("text"), sent.pop("namespace"), sent.pop("level")
            category = log_categories.get(sent.get("log_category"))
            lines.append(formatEvent({**sent, "log_format": category or text}))
        return lines

    log.printed = printed
    yield log
    txaio.set_global_log_level(previous)


def test_values_format_strings_and_objects_reach_the_controller_as_one_escaped_line(worker_log):
    class Shown:
        def __str__(self):
            return f"object\n{FAKE}"

    worker_log.warn("uri={uri} headers={headers} thing={thing}", uri=f"app\n{FAKE}\x1bM",
                    headers={"x": "\x9d"}, thing=Shown())  # fmt: skip
    worker_log.warn(f"an f-string quoting the client: x\n{FAKE}")
    lines = worker_log.printed()
    assert len(lines) == 2 and all(is_safe(line) for line in lines), lines
    assert f"uri=app\\n{FAKE}\\x1bM" in lines[0] and f"thing=object\\n{FAKE}" in lines[0]
    assert f"x\\n{FAKE}" in lines[1]


def test_a_failure_and_its_traceback_are_one_escaped_line(worker_log):
    try:
        raise ValueError(f"bad realm\n{FAKE}")
    except ValueError:
        worker_log.failure("failed: {log_failure.value}")
    [line] = worker_log.printed()
    assert is_safe(line)
    assert line.startswith(f"failed: bad realm\\n{FAKE} Traceback (most recent call last):\\n")
    assert line.endswith(f"builtins.ValueError: bad realm\\n{FAKE}")


def test_a_categorized_event_rendered_by_the_controller_from_the_values_is_escaped(worker_log):
    worker_log.warn(log_category="AR452", accepted="application/json", given=f"text/plain\x08\n{FAKE}")
    [line] = worker_log.printed()
    assert is_safe(line) and f"text/plain\\x08\\n{FAKE}" in line


def test_values_stay_bounded_and_tokens_redacted(worker_log):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    worker_log.warn("long={long} headers={headers}", long="z" * 100_000,
                    headers={"Cookie": f"cbjwt={token}", "Authorization": "Basic c2VjcmV0"})  # fmt: skip
    [line] = worker_log.printed()
    assert token not in line and "c2VjcmV0" not in line and len(line) < 3 * MAX_LOGGED_VALUE


def test_an_event_below_the_level_costs_nothing_and_is_dropped(worker_log):
    worker_log.debug("dropped {x}", x="\n")
    assert worker_log.printed() == []


def test_an_object_that_cannot_be_shown_still_gives_a_line_and_the_observer_stays(worker_log):
    class Unshowable:
        def __repr__(self):
            raise RuntimeError("no")

        __str__ = __repr__

    worker_log.warn("value {thing}", thing=Unshowable())
    worker_log.warn("after {x}", x="\n")
    lines = worker_log.printed()
    assert len(lines) == 2 and all(is_safe(line) for line in lines) and lines[1] == "after \\n", lines
