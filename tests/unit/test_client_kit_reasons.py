"""The two client kits decide alike: the same final reasons, each one the router can send."""

import re

from authenticator.core.reasons import Reason
from authenticator.kit.twisted import FINAL_REASONS
from tests.support.router import REPO


def js_final_reasons() -> set[str]:
    source = (REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js").read_text()
    block = re.search(r"export const FINAL_REASONS = new Set\(\[(.*?)\]\);", source, re.S)
    assert block is not None, "web/crossbar-jwt/crossbar-jwt.js has no FINAL_REASONS set"
    constants = dict(re.findall(r'export const ([A-Z_]+) = "([^"]+)";', source))
    names = re.findall(r'"([^"]+)"|\b([A-Z_]{3,})\b', block.group(1))
    return {literal or constants[name] for literal, name in names}


def test_the_javascript_and_python_kits_stop_on_the_same_reasons():
    assert js_final_reasons() == set(FINAL_REASONS)


def test_every_final_reason_is_one_the_router_sends_and_a_fresh_token_cannot_fix():
    ours = {reason.uri for reason in Reason}
    for uri in FINAL_REASONS:
        assert uri in ours or uri.startswith(("wamp.error.", "crossbar-jwt.")), uri  # the kits' own: NO_TOKEN
    # A fresh token (or a retry) fixes these: a kit must reconnect, not stop.
    for passing in (Reason.EXPIRED, Reason.NOT_YET_VALID, Reason.REPLAYED, Reason.STORE_UNAVAILABLE,
                    Reason.INTERNAL_ERROR, Reason.REFRESH_REFUSED):  # fmt: skip
        assert passing.uri not in FINAL_REASONS
