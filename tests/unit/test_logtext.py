"""Text from outside in a log line: one line, nothing a terminal obeys, bounded, no token
(authenticator/core/logtext.py); and the worker's log observer that applies it to every event
(authenticator/patches/hardening.py), with Crossbar's own JSON observer and the controller's rendering."""

from __future__ import annotations

import io
import json
import re
import time
import unicodedata

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import authenticator.core.logtext as logtext
from authenticator.core.logtext import MAX_LOGGED_VALUE, REDACTED, clip, escape, for_log, has_unsafe, redact

FAKE = "2026-01-01T00:00:00+0000 [Router 4242] authentication accepted: authid=root role=admin"
# Everything str.splitlines() breaks a line at.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# What a terminal obeys, and what hides or reorders text.
TERMINAL = "\x00\x07\x08\x1b\x7f\x90\x9b\x9c\x9d"
INVISIBLE = "\u061c\u200b\u200e\u200f\u202a\u202e\u2060\u2066\u2069\ufeff"
# Format characters the first escaping missed: soft hyphen, Mongolian vowel separator, the
# deprecated shaping controls, interlinear annotation, tag characters (which can spell hidden
# ASCII: U+E0041 is a tag "A"); and a private-use and an unassigned code point.
HIDDEN = "\u00ad\u180e\u206a\u206f\ufff9\ufffb\U000e0001\U000e0041\U000e007f\ue000\U000f0000\u0378\U0010ffff"
# Categories no escaped text may hold: controls, format characters, line/paragraph separators,
# surrogates, private use, unassigned.
FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
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
        ("ad\u00admin", "ad\\xadmin"),  # soft hyphen
        ("\u180e\u206a\ufff9", "\\u180e\\u206a\\ufff9"),
        ("root\U000e0061\U000e0064", "root\\U000e0061\\U000e0064"),  # tag characters
        ("\ue000\U0010fffd", "\\ue000\\U0010fffd"),  # private use
        ("\u0378", "\\u0378"),  # unassigned
        ("a\xa0b\u3000c", "a\xa0b\u3000c"),  # spaces (Zs) are kept
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
DANGEROUS = st.sampled_from(LINE_BREAKS + TERMINAL + INVISIBLE + HIDDEN + "\ud800\udfff")
ANY_CHAR = st.characters(exclude_categories=())
# (A list joined, not st.text: st.text merges the alphabets into one range of code points, in which
# the few dangerous ones are rarely drawn.)
ONE_CHAR = st.one_of(DANGEROUS, st.characters(min_codepoint=32, max_codepoint=126), ANY_CHAR)
TEXT = st.lists(ONE_CHAR, max_size=60).map("".join)


def test_for_any_text_the_escaped_form_is_one_safe_line_and_printable_text_is_unchanged():
    reached = {"unsafe": 0, "printable": 0, "hidden": 0}

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
            reached["hidden"] += any(ch in HIDDEN for ch in text)
            assert escaped != text
        else:
            event("printable only")
            reached["printable"] += 1
            assert escaped == text

    check()
    # Both branches ran often: the property was checked on dangerous text, not only on easy text.
    # Both branches ran often, and the characters the first escaping missed were among the dangerous.
    assert reached["unsafe"] >= 300 and reached["printable"] >= 50 and reached["hidden"] >= 100, reached


def test_every_character_str_splitlines_breaks_at_is_escaped():
    everything = "".join(chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1)
    assert set(everything) == set(LINE_BREAKS)
    assert is_safe(escape(everything))


def test_every_control_character_is_escaped():
    controls = "".join(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc")
    assert len(controls) == 65 and is_safe(escape(controls))


def test_every_character_of_the_forbidden_categories_is_escaped_and_no_other():
    every = [chr(c) for c in range(0x110000)]
    forbidden = "".join(ch for ch in every if unicodedata.category(ch) in FORBIDDEN_CATEGORIES)
    assert len(forbidden) > 800_000 and is_safe(escape(forbidden))
    assert escape(forbidden).isascii() and escape(escape(forbidden)) == escape(forbidden)
    kept = "".join(ch for ch in every if unicodedata.category(ch) not in FORBIDDEN_CATEGORIES)
    assert escape(kept) == kept


# -- clip, redact, for_log -------------------------------------------------------------------------


def test_clip_keeps_head_and_tail_and_says_how_much_was_cut():
    assert clip("x" * 10, 10) == "x" * 10
    assert clip("a" * 30 + "b" * 30, 20) == "a" * 10 + " ...[40 characters cut]... " + "b" * 10
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


# A real token: its signature must never reach a log line, wherever a cut falls.
TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjoyMTQ3NDgzNjQ4fQ"
    ".kQ0s3yCSt3ZQGcp1dkPWqkuAO1Ui37bE9LXjNTA0Xq8"
)
SIGNATURE = TOKEN.rsplit(".", 1)[1]
SECRET = "Basic c2VjcmV0LXBhc3N3b3JkLW9mLWFsaWNl"  # an Authorization header's value
FILLERS = ("x", " ")  # base64url text runs into the token; a space does not


def leaks(out: str) -> bool:
    """Whether any 12 characters of the token after its first 12, or of the header value, are in
    the output (a token cut inside its header left the rest, signature included)."""
    return SIGNATURE in out or any(part[i : i + 12] in out for part in (TOKEN, SECRET)
                                   for i in range(12, len(part) - 12))  # fmt: skip


def placed(secret: str, cut: int, length: int, filler: str) -> list[str]:
    """`length` characters of filler with the secret at every offset from wholly before the cut
    (position `cut`, from the start, or from the end when negative) to wholly after it."""
    at = cut if cut >= 0 else length + len(secret) + cut
    return [filler * offset + secret + " " + filler * (length - offset)
            for offset in range(max(0, at - len(secret) - 2), at + 3)]  # fmt: skip


@pytest.mark.parametrize("filler", FILLERS)
@pytest.mark.parametrize("secret", [TOKEN, f"{{'Cookie': 'cbjwt={TOKEN}'}}", f"{{b'authorization': b'{SECRET}'}}"])
def test_a_secret_is_redacted_wherever_the_cut_falls_in_a_value(secret, filler):
    """for_log and clip cut a value to MAX_LOGGED_VALUE, keeping head and tail: a token, a Cookie
    or an Authorization value at every offset around each cut. Cut first, a cut inside a token's
    header left the rest of it without its "eyJ", and in the log."""
    half = MAX_LOGGED_VALUE // 2
    for cut in (half, -half):
        for value in placed(secret, cut, 3 * MAX_LOGGED_VALUE, filler):
            for out in (for_log(value), clip(value)):
                assert not leaks(out) and "characters cut" in out, (cut, value.find(secret), out)


def test_the_cut_marker_neither_makes_nor_splits_a_token():
    # The head ends and the tail starts with what would join the marker's dots into a token.
    out = clip("eyJhead" + "x" * 100 + "y.z", 20)
    assert redact(out) == out and REDACTED not in out
    assert for_log("a" * 5000).count(" ...[") == 1 and len(for_log("a" * 5000)) < MAX_LOGGED_VALUE + 40


def test_escaping_comes_after_the_cut(monkeypatch):
    """A long value of line breaks is cut before it is escaped: escape() never sees more than the
    limit (it was the whole 60 KB), and the escaped head and tail still fit, cut between escapes."""
    seen = []
    escape_all = logtext.escape
    monkeypatch.setattr(logtext, "escape", lambda text: seen.append(len(text)) or escape_all(text))
    out = logtext.for_log("a\n" * 30_000 + "\u2028")
    assert max(seen) <= MAX_LOGGED_VALUE and len(out) <= MAX_LOGGED_VALUE + 40, (max(seen), len(out))
    head, tail = out.split(" ...[")[0], out.split("]... ")[1]
    assert ("a\\n" * 1000).startswith(head) and tail.endswith("a\\n\\u2028") and is_safe(out)
    cut = int(re.search(r"\[(\d+) characters cut\]", out).group(1))
    shown = len(head) - head.count("\\n") + len(tail) - tail.count("\\n") - len("\\u2028") + 1
    assert cut + shown == 60_001  # every raw character shown or counted


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

    from authenticator.patches.log_values import _BoundedObserver

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


@pytest.mark.parametrize("filler", FILLERS)
@pytest.mark.parametrize("secret", [TOKEN, f"{{'Cookie': 'cbjwt={TOKEN}'}}", f"{{b'authorization': b'{SECRET}'}}"])
def test_a_secret_is_redacted_wherever_the_value_or_the_line_is_cut(worker_log, secret, filler):
    """The observer cuts each value (MAX_LOGGED_VALUE) before rendering, and the rendered line
    (MAX_LOGGED_LINE, here a format built with an f-string); a secret at every offset around
    each cut never reaches the line the controller prints."""
    from authenticator.patches.log_values import MAX_LOGGED_LINE

    value_half, line_half = MAX_LOGGED_VALUE // 2, MAX_LOGGED_LINE // 2
    for cut in (value_half, -value_half):
        for value in placed(secret, cut, 3 * MAX_LOGGED_VALUE, filler):
            worker_log.warn("value {value}", value=value)
    for cut in (line_half, -line_half):
        for line in placed(secret, cut, 3 * MAX_LOGGED_LINE, filler):
            worker_log.warn(line.replace("{", "{{").replace("}", "}}"))
    lines = worker_log.printed()
    assert len(lines) == 2 * 2 * (len(secret) + 5)
    wrong = [line for line in lines if "characters cut" not in line or leaks(line)]
    assert not wrong, wrong[0]


def test_a_format_asking_for_a_huge_width_is_not_rendered(worker_log):
    """A client's words in a format built with an f-string: "{log_time:>200000000}" rendered 200 MB
    in 1.5 s. A width or precision over the bound, or given by a field, is refused."""
    started = time.perf_counter()
    worker_log.warn("x {log_time:>200000000} y")
    worker_log.warn("x {log_time:.999999999f}")
    worker_log.warn("x {v:{w}}", v=1, w=10**9)
    worker_log.warn("a {v:>6} b {v:08.3f}", v=1.5)  # ordinary widths are rendered
    lines = worker_log.printed()
    assert time.perf_counter() - started < 1.0 and all(len(line) < 200 for line in lines), lines
    assert all(line.startswith("(format not rendered: ") for line in lines[:3]), lines
    assert "x {log_time:>200000000} y" in lines[0] and "{v:{w}}" in lines[2]
    assert lines[3] == "a    1.5 b 0001.500"


def test_only_the_values_the_controller_reads_are_passed_on():
    """The controller prints a worker's text, and renders values only for an event with a
    log_category: the others are not passed on (nor escaped, nor turned into JSON)."""
    import txaio

    txaio.use_twisted()
    from twisted.logger import LogLevel

    from authenticator.patches.log_values import _BoundedObserver

    previous = txaio.get_global_log_level()
    txaio.set_global_log_level("info")
    try:
        passed = []
        observer = _BoundedObserver(passed.append)
        big = {"headers": {f"h{i}": "v" * 60 for i in range(20)}}
        common = {"log_level": LogLevel.warn, "log_time": 1.0, "log_namespace": "test", "log_source": None}
        observer({**common, "log_format": "joined {details}", "details": big, "log_logger": None})
        observer({**common, "log_category": "AR452", "accepted": "a\nb", "given": big})
    finally:
        txaio.set_global_log_level(previous)
    plain, categorized = passed
    assert set(plain) == {"log_level", "log_time", "log_namespace", "log_source", "log_logger", "log_format"}
    assert "joined {{'headers': {{'h0': 'vvv" in plain["log_format"]
    assert categorized["accepted"] == "a\\nb" and categorized["given"] == repr(big)
