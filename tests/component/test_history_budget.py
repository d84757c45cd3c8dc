"""The per-publisher budget of kept events (settings.history.publisher_bytes_per_minute): one user
publishing big events to history topics is refused once it had its budget kept this minute, with
the reason logged; other publishers are not affected."""

from types import SimpleNamespace

import txaio
from autobahn.wamp import message

from authenticator.core.policy import load_policy
from authenticator.core.settings import HistorySettings
from authenticator.server.history import History

POLICY = {"roles": [{"name": "user", "rules": [
    {"uri": "app.chat.", "match": "prefix", "allow": {"subscribe": True, "publish": True},
     "history": {"size": 100, "ttl_seconds": 600}}]}]}  # fmt: skip
txaio.use_twisted()
ALLOWED = {"allow": True, "disclose": True, "cache": False}


class Log:
    def __init__(self):
        self.lines = []

    def warn(self, text, **fields):
        self.lines.append(text.format(**fields))


def session(authid):
    return SimpleNamespace(_authid=authid, _authrole="user", _session_id=hash(authid))


def test_a_publisher_over_its_budget_is_refused_with_the_reason_and_others_go_on():
    settings = SimpleNamespace(
        policy=load_policy(POLICY, anonymous_role=None), limits=SimpleNamespace(max_uri_length=512),
        store=SimpleNamespace(redis_url=None), history=HistorySettings(publisher_bytes_per_minute=50_000),
    )  # fmt: skip
    log = Log()
    history = History(settings, authorizer=None, token_roles=lambda caller: (), log=log)
    big = "x" * 10_000
    answers = [history.tap.authorized(message.Publish(n, f"app.chat.room{n}", args=[big]), session("mallory"), ALLOWED)
               for n in range(10)]  # fmt: skip
    kept = [a for a in answers if a["allow"]]
    assert len(kept) == 4  # 4 x ~10.4 KB within 50,000 bytes; the 5th would pass it
    assert all(not a["allow"] for a in answers[4:])
    assert history.tap.authorized(message.Publish(99, "app.chat.room", args=["hi"]), session("alice"), ALLOWED)["allow"]
    assert log.lines[0].startswith("authorization denied: publish app.chat.room4 authid=mallory role=user via=history "
                                   "reason=the publisher had 50000 bytes of events kept within a minute")  # fmt: skip
    assert len(history.store) == 5  # mallory's 4 streams and alice's: nothing kept for a refused one
