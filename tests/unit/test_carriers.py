"""Where a token travels besides the ticket: the upgrade's Bearer header and the Origin-checked cookie.

The Cookie header is attacker-controlled and parsed on the reactor: its cost must grow linearly
with its length, whatever it holds.
"""

import timeit
from dataclasses import replace

import pytest

from authenticator.core import carriers
from authenticator.core.carriers import token_from_headers
from authenticator.core.reasons import Reason, Rejected

ALLOWED = "http://127.0.0.1:8080"  # in the shipped cookie.allowed_origins
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def carried(settings, cookie: str | None, origin: str | None = ALLOWED, **more) -> tuple[str | None, str]:
    headers = {"cookie": cookie, "origin": origin, **more}
    return token_from_headers({k: v for k, v in headers.items() if v is not None}, settings)


def test_the_token_cookie_is_found_among_other_cookies(settings):
    assert carried(settings, f"theme=dark; cbjwt={TOKEN}; lang=en") == (TOKEN, "cookie")
    assert carried(settings, f"cbjwt={TOKEN}") == (TOKEN, "cookie")
    assert carried(settings, f"theme=dark;cbjwt = {TOKEN} ;lang=en") == (TOKEN, "cookie")


def test_similarly_named_cookies_are_not_the_token_cookie(settings):
    assert carried(settings, "xcbjwt=a.b.c; cbjwt2=a.b.c; cbjwt_=a.b.c; CBJWT=a.b.c") == (None, "none")
    assert carried(settings, f"other=cbjwt=a.b.c; cbjwt2=x; cbjwt={TOKEN}") == (TOKEN, "cookie")
    assert carried(settings, "cbjwt") == (None, "none")  # a name without '=' carries no value


def test_a_double_quoted_value_loses_its_quotes(settings):
    assert carried(settings, f'theme=dark; cbjwt="{TOKEN}"') == (TOKEN, "cookie")
    # Only the quotes go: nothing is unescaped, and a lone quote stays (the verifier refuses it).
    assert carried(settings, 'cbjwt="a\\"b"') == ('a\\"b', "cookie")
    assert carried(settings, 'cbjwt="') == ('"', "cookie")


def test_the_first_of_two_token_cookies_counts(settings):
    # Browsers send the cookie with the longest path first (RFC 6265 5.4).
    assert carried(settings, f"cbjwt={TOKEN}; cbjwt=other") == (TOKEN, "cookie")


def test_no_token_cookie_no_token(settings):
    assert carried(settings, "theme=dark; lang=en") == (None, "none")
    assert carried(settings, "") == (None, "none")
    assert carried(settings, None) == (None, "none")
    assert token_from_headers(None, settings) == (None, "none")
    assert token_from_headers({}, settings) == (None, "none")


def test_an_empty_token_cookie_is_an_empty_token(settings):
    # As before: the verifier answers missing_token, which tells the client what happened.
    assert carried(settings, "cbjwt=; theme=dark") == ("", "cookie")


def test_the_bearer_header_wins_over_the_cookie(settings):
    assert carried(settings, "cbjwt=cookie.token.x", authorization="Bearer bearer.token.x") == (
        "bearer.token.x",
        "bearer",
    )
    # Not a Bearer scheme: the cookie is used.
    assert carried(settings, f"cbjwt={TOKEN}", authorization="Basic dXNlcjpwYXNz") == (TOKEN, "cookie")


def test_the_cookie_only_counts_from_an_allowed_origin(settings):
    for origin in ("https://evil.example", "http://127.0.0.1:8080.evil.example", "null", None):
        with pytest.raises(Rejected) as refused:
            carried(settings, f"theme=dark; cbjwt={TOKEN}", origin=origin)
        assert refused.value.reason is Reason.ORIGIN_NOT_ALLOWED
    assert carried(settings, f"cbjwt={TOKEN}", origin="http://localhost:8080/") == (TOKEN, "cookie")
    # Without the token cookie the Origin does not matter: an anonymous visitor from anywhere.
    assert carried(settings, "theme=dark", origin="https://evil.example") == (None, "none")
    assert carried(settings, "xcbjwt=a.b.c", origin="https://evil.example") == (None, "none")


def test_cookies_are_ignored_without_a_cookie_rule(settings):
    assert carried(replace(settings, cookie=None), f"cbjwt={TOKEN}", origin="https://evil.example") == (None, "none")


def test_a_cookie_header_past_the_limit_is_read_only_up_to_it(settings, monkeypatch):
    monkeypatch.setattr(carriers, "MAX_COOKIE_HEADER_CHARS", 100)
    padding = "p=" + "x" * 60
    assert carried(settings, f"{padding}; cbjwt=a.b.c; more=1") == ("a.b.c", "cookie")
    # The pair the limit cuts is never handed on, not even its start.
    assert carried(settings, f"{padding}; cbjwt={TOKEN}") == (None, "none")
    assert carried(settings, f"{padding}; {padding}; cbjwt={TOKEN}") == (None, "none")
    assert carried(settings, "x" * 200 + f"; cbjwt={TOKEN}") == (None, "none")


# Cookie headers an attacker can send; each must cost time linear in its length. The first is
# CVE-2024-7592 (http.cookies.SimpleCookie, quadratic in the backslashes of a quoted value).
HOSTILE_SHAPES = {
    "quoted backslashes": lambda n: 'cbjwt="' + "\\" * n + '"',
    "backslashes under another name": lambda n: 'a="' + "\\" * n + '"; cbjwt=x',
    "semicolons": lambda n: ";" * n,
    "spaces": lambda n: "; " + " " * n + "=",
    "near names": lambda n: "; cbjwt " * (n // 8),
    "name prefixes": lambda n: "cbjw" * (n // 4),
}
SMALL, GROWTH = 1000, 16  # the larger header (16,000 characters) is still under the parser's limit
BATCH_SECONDS = 0.05


def cost_per_parse(settings, header: str, number: int) -> float:
    headers = {"cookie": header, "origin": ALLOWED}
    timer = timeit.Timer(lambda: token_from_headers(headers, settings))
    return min(timer.repeat(repeat=5, number=number)) / number


def calibrated_number(settings, header: str) -> int:
    """How many parses of `header` make a batch of at least BATCH_SECONDS."""
    headers = {"cookie": header, "origin": ALLOWED}
    timer, number = timeit.Timer(lambda: token_from_headers(headers, settings)), 1
    while timer.timeit(number) < BATCH_SECONDS:
        number *= 2
    return number


@pytest.mark.parametrize("shape", list(HOSTILE_SHAPES))
def test_a_hostile_cookie_header_costs_time_linear_in_its_length(settings, shape):
    """16 x the input may cost at most 48 x the time: linear gives <= 16 (fixed costs make it less),
    quadratic ~256. Both sizes are timed here, so the machine's speed cancels out, each as the best
    of 5 batches of about BATCH_SECONDS, so one hiccup cannot decide it."""
    make = HOSTILE_SHAPES[shape]
    small, large = make(SMALL), make(SMALL * GROWTH)
    assert len(large) < carriers.MAX_COOKIE_HEADER_CHARS
    number = calibrated_number(settings, small)
    per_small = cost_per_parse(settings, small, number)
    per_large = cost_per_parse(settings, large, max(1, number // GROWTH))
    ratio = per_large / per_small
    print(f"\n{shape}: {per_small * 1e6:.1f} us -> {per_large * 1e6:.1f} us for {GROWTH} x the length ({ratio:.1f} x)")
    assert ratio < 3 * GROWTH, f"{GROWTH} x the header cost {ratio:.0f} x the time: parsing is not linear"


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer \tabc \t", "abc"), ("BEARER abc", "abc"), ("Bearer ", ""), ("Bearer", ""),
     ("Basic abc", None), ("Bearer \x1cabc\x1f", "\x1cabc\x1f")],
)  # fmt: skip
def test_the_one_bearer_parser_trims_only_http_whitespace(header, token):
    """The WebSocket upgrade and POST /publish read the header here; what is not HTTP whitespace
    stays in the token, for the verifier to refuse (str.strip took \\x1c, \\x85 and \\xa0 away)."""
    assert carriers.bearer_token(header) == token


@pytest.mark.parametrize("header", ["Bearer abc\xa0", "Bearer \x85abc", "Bearer ab\u00e9c"])
def test_a_bearer_token_that_is_not_ascii_is_malformed(header):
    with pytest.raises(Rejected) as caught:
        carriers.bearer_token(header)
    assert (caught.value.reason, caught.value.detail) == (Reason.MALFORMED_TOKEN, "the token is not ASCII")
