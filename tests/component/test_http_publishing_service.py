"""HttpPublishing's failure paths that a real router does not produce on demand: a token store
that is down, one publication of a batch failing on its own."""

import pytest_twisted
from twisted.internet.defer import maybeDeferred

from authenticator.core.reasons import Reason, Rejected
from authenticator.core.tokens import Identity
from authenticator.endpoints import metrics
from authenticator.endpoints.publish import HttpPublishing

BACKEND = Identity("billing", "backend", ("backend",), None, None, None, {})


class Log:
    def __init__(self):
        self.lines = []

    def warn(self, text, **fields):
        self.lines.append(text.format(**fields))


class StoreDown:
    def check(self, token):
        raise Rejected(Reason.STORE_UNAVAILABLE, authid="billing")


class Admits:
    def check(self, token):
        return BACKEND


class Allows:
    def decide(self, **request):
        from authenticator.core.policy import Decision

        return Decision(True, False, True, 2, "allowed")


class Limits:
    class limits:  # noqa: N801 - a stand-in for Settings.limits
        max_uri_length = 512


def service(admission, pool=None):
    publishing = HttpPublishing.__new__(HttpPublishing)  # no router: the pool is a stand-in
    publishing.realm, publishing._admission, publishing._authorizer = "realm1", admission, Allows()
    publishing._settings, publishing._log, publishing.pool = Limits, Log(), pool
    publishing._published_count = metrics.HTTP_PUBLISHES.labels("realm1", "published", "none")
    return publishing


def test_a_token_store_that_is_down_is_503_retry_after_not_401():
    answer = service(StoreDown()).handle("eyJ.a.b", b'{"topic": "app.public.news"}', "127.0.0.1:1", 100)
    assert answer.status == 503 and answer.headers == {"Retry-After": "1"}
    assert answer.body["error"] == "authenticator.error.store_unavailable"
    assert "WWW-Authenticate" not in answer.headers


class FailsFor:
    """A pool whose session for one topic fails unexpectedly (say, attaching it to the router)."""

    def __init__(self, topic):
        self.topic = topic

    def session(self, authid, role):
        return self

    def publish_decided(self, topic, args, kwargs, options, answer):
        if topic == self.topic:
            raise RuntimeError("attach failed")
        from twisted.internet.defer import succeed

        return succeed(7)


@pytest_twisted.ensureDeferred
async def test_one_failing_publication_does_not_fail_the_batch_the_others_went_out():
    publishing = service(Admits(), FailsFor("app.b"))
    body = b'[{"topic": "app.a"}, {"topic": "app.b"}, {"topic": "app.c"}]'
    answer = await maybeDeferred(publishing.handle, "eyJ.a.b", body, "127.0.0.1:1", 100)
    assert answer.status == 200
    assert answer.body == [{"id": 7}, {"error": "wamp.error.runtime_error",
                                       "message": "The router could not publish this; retry, or read its log."},
                           {"id": 7}]  # fmt: skip
    assert publishing._log.lines == ["http publish failed: internal error RuntimeError"]


class HistoryDown:
    """A pool whose router refuses the publication: its topic keeps history and the store is down
    (with the Redis store a /publish meets the token store first; a deployment whose token store
    answers while the history's does not gets this)."""

    def session(self, authid, role):
        return self

    def publish_decided(self, topic, args, kwargs, options, answer):
        from autobahn.wamp.exception import ApplicationError
        from twisted.internet.defer import fail

        return fail(ApplicationError("wamp.error.authorization_failed", "failed to authorize session for publishing "
                    "to topic URI 'app.chat.x': authenticator.error.history_unavailable: the history store cannot be "
                    "reached"))  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_history_store_that_is_down_is_503_retry_after_saying_nothing_was_published():
    publishing = service(Admits(), HistoryDown())
    answer = await maybeDeferred(publishing.handle, "eyJ.a.b", b'{"topic": "app.chat.x"}', "127.0.0.1:1", 100)
    assert (answer.status, answer.headers) == (503, {"Retry-After": "1"})
    assert answer.body == {"error": "authenticator.error.history_unavailable", "message": (
        "'app.chat.x' keeps history and its store cannot be reached: nothing was sent to subscribers (after a timeout "
        "the event may have been kept). Retry (with the same "
        "Idempotency-Key).")}  # fmt: skip
