"""The JWKS refresher on its own: one fetch at a time (concurrent logins with a new kid wait for the
same one), a refetch for an unknown kid at most once per interval, and a failed fetch keeps the
keys already fetched. The fetch itself is replaced; the router tests fetch from a real server."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted

from authenticator.config.node_config import component_extra
from authenticator.config.settings import load_settings
from authenticator.core.keys import keys_from_jwks
from authenticator.core.reasons import Reason, Rejected
from authenticator.server import jwks as jwks_module
from authenticator.server.jwks import JwksRefresher
from tests.support.keys import new_private_key, public_jwk
from tests.support.router import REPO

URL = "https://idp.invalid/.well-known/jwks.json"
IDP = new_private_key("rsa")


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, *args, **kwargs) -> None: ...

    def warn(self, text, **kwargs) -> None:
        self.warnings.append(text.format(**kwargs))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def refresher(tmp_path, monkeypatch):
    extra = {**component_extra(REPO / ".crossbar" / "config.json"),
             "keys": [{"jwks_url": URL, "algorithms": ["RS256"], "min_refetch_seconds": 30}]}  # fmt: skip
    settings = load_settings(extra, tmp_path)
    clock, log = Clock(), _Log()
    fetches: list[threading.Event] = []
    answers: list = []

    def fetch(url, algorithms, timeout):
        assert url == URL
        gate = threading.Event()
        fetches.append(gate)
        gate.wait(10)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return keys_from_jwks({"keys": answer}, algorithms, url)

    monkeypatch.setattr(jwks_module, "fetch_jwks", fetch)
    refresher = JwksRefresher(settings, log, clock=clock)
    refresher._pool.start()
    yield refresher, settings, clock, log, fetches, answers
    for gate in fetches:
        gate.set()
    refresher._pool.stop()


def unknown_kid() -> Rejected:
    return Rejected(Reason.UNKNOWN_KEY, "no key is configured for the token's kid")


def has_kid(settings, kid: str) -> bool:
    try:
        settings.keys.select(kid, "RS256")
    except Rejected:
        return False
    return True


async def until_fetching(fetches: list, count: int) -> None:
    from tests.support.wamp import eventually

    await eventually(lambda: len(fetches) >= count, 5, f"fetch #{count} to start")


@pytest_twisted.ensureDeferred
async def test_concurrent_refreshes_share_one_fetch(refresher):
    refresher, settings, _clock, _log, fetches, answers = refresher
    answers.append([public_jwk(IDP, "idp-1")])
    first, second = refresher.refresh(), refresher.refresh()
    await until_fetching(fetches, 1)
    fetches[0].set()
    await first
    await second
    assert len(fetches) == 1 and has_kid(settings, "idp-1")


@pytest_twisted.ensureDeferred
async def test_an_unknown_kid_is_worth_a_refetch_at_most_once_per_interval(refresher):
    refresher, settings, clock, _log, fetches, answers = refresher
    assert refresher.worth_a_refetch(unknown_kid())  # never fetched yet
    assert not refresher.worth_a_refetch(Rejected(Reason.INVALID_SIGNATURE, "bad"))  # only an unknown kid
    answers.append([public_jwk(IDP, "idp-1")])
    fetching = refresher.refresh()
    await until_fetching(fetches, 1)
    assert refresher.worth_a_refetch(unknown_kid())  # under way: wait for it rather than refuse
    fetches[0].set()
    await fetching
    clock.now += 29
    assert not refresher.worth_a_refetch(unknown_kid())  # within min_refetch_seconds of the last fetch
    clock.now += 1
    assert refresher.worth_a_refetch(unknown_kid())


@pytest_twisted.ensureDeferred
async def test_a_failed_fetch_keeps_the_keys_already_fetched_and_is_logged(refresher):
    refresher, settings, _clock, log, fetches, answers = refresher
    answers += [[public_jwk(IDP, "idp-1")], OSError("connection refused")]
    fetching = refresher.refresh()
    await until_fetching(fetches, 1)
    fetches[0].set()
    await fetching
    failing = refresher.refresh()
    await until_fetching(fetches, 2)
    fetches[1].set()
    await failing  # never fails: the login that waited on it is refused unknown_key, not an error
    assert has_kid(settings, "idp-1")
    assert log.warnings == ["authenticator: JWKS fetch failed (connection refused); keeping cached keys"]


@pytest_twisted.ensureDeferred
async def test_a_key_removed_at_the_provider_disappears_at_the_next_fetch(refresher):
    refresher, settings, _clock, _log, fetches, answers = refresher
    answers += [[public_jwk(IDP, "idp-1")], [public_jwk(IDP, "idp-2")]]
    for n in (1, 2):
        fetching = refresher.refresh()
        await until_fetching(fetches, n)
        fetches[n - 1].set()
        await fetching
    assert has_kid(settings, "idp-2") and not has_kid(settings, "idp-1")
