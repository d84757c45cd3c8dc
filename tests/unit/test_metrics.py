"""/metrics keeps answering when the router's session count cannot be read, realm by realm."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from authenticator.endpoints import metrics

ROLES = ("anonymous", "user", "admin")


@pytest.fixture
def active_sessions(monkeypatch):
    monkeypatch.setattr(metrics.ACTIVE_SESSIONS, "_realms", {})
    return metrics.ACTIVE_SESSIONS


def scrape() -> list[str]:
    return [line for line in generate_latest(metrics.REGISTRY).decode().splitlines() if not line.startswith("#")]


def test_active_sessions_are_counted_by_realm_and_role_and_the_scrape_says_it_worked(active_sessions):
    active_sessions.serve("realm1", ROLES, {"anonymous": 1, "user": 2, "admin": 0}.__getitem__)
    active_sessions.serve("tenant-b", ("user",), {"user": 7}.__getitem__)
    lines = scrape()
    assert 'crossbar_jwt_active_sessions{realm="realm1",role="user"} 2.0' in lines
    assert 'crossbar_jwt_active_sessions{realm="realm1",role="admin"} 0.0' in lines
    assert 'crossbar_jwt_active_sessions{realm="tenant-b",role="user"} 7.0' in lines
    assert 'crossbar_jwt_active_sessions_scrape_ok{realm="realm1"} 1.0' in lines
    assert 'crossbar_jwt_active_sessions_scrape_ok{realm="tenant-b"} 1.0' in lines


@pytest.mark.parametrize("error", [TimeoutError, RuntimeError])
def test_metrics_still_answer_when_the_session_count_fails_and_say_that_it_failed(active_sessions, error):
    asked = []

    def count(role):
        asked.append(role)
        raise error("wamp.session.count did not answer")

    active_sessions.serve("realm1", ROLES, count)
    active_sessions.serve("tenant-b", ("user",), {"user": 7}.__getitem__)
    lines = scrape()  # does not raise: the other metrics are served
    assert not [line for line in lines if line.startswith('crossbar_jwt_active_sessions{realm="realm1"')]
    assert 'crossbar_jwt_active_sessions_scrape_ok{realm="realm1"} 0.0' in lines
    assert 'crossbar_jwt_active_sessions{realm="tenant-b",role="user"} 7.0' in lines  # the other realm answered
    assert any(line.startswith("process_") for line in lines)
    assert asked == ["anonymous"]  # one failure is enough: no scrape waits for every role's timeout


def test_before_a_component_joined_the_session_count_is_not_claimed(active_sessions):
    lines = scrape()
    assert not [line for line in lines if line.startswith("crossbar_jwt_active_sessions{")]
    assert 'crossbar_jwt_active_sessions_scrape_ok{realm="none"} 0.0' in lines
    active_sessions.serve("realm1", ROLES, {"anonymous": 1, "user": 2, "admin": 0}.__getitem__)
    active_sessions.stop("realm1")  # the component left
    assert 'crossbar_jwt_active_sessions_scrape_ok{realm="none"} 0.0' in scrape()
