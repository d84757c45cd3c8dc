"""The demo issuer runs inside the router worker: a hostile body or a password guesser must cost
it little. Bodies are bounded (413), parsed without recursion (400), and logins are limited per
client address (429 with Retry-After) — in both deployments, behind the proxies too."""

import http.client
import json

import pytest

from tests.conftest import DEPLOYMENTS
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET

ALICE = {"username": "alice", "password": "alice-demo-password"}
WRONG = {"username": "alice", "password": "not-her-password"}
JSON = {"Content-Type": "application/json"}


def send(node, method, path, body=None, *, source="127.0.0.1", headers=None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one request, sent from a loopback `source` address."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers={**JSON, **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        connection.close()


def login(node, body, **kwargs) -> tuple[int, dict, dict]:
    return send(node, "POST", "/auth/login", body, **kwargs)


def test_a_200_kb_body_of_nested_arrays_is_refused_unread_and_the_node_keeps_serving(router):
    status, body, _ = login(router, b"[" * 100_000 + b"]" * 100_000)
    assert status == 413
    assert "4096 bytes" in body["error"]
    # refused while it arrives (authenticator/patches/body_limit.py), with the issuer's own advice; behind
    # the proxies the proxy refuses it, with the bound the issuer declares (more: test_request_bodies.py)
    assert ('"username"' in body["error"]) is not bool(router.proxies)
    assert router.process.poll() is None
    status, body, headers = login(router, ALICE)
    assert (status, body) == (200, {"authid": "alice", "roles": ["user"]})
    cookie = headers["Set-Cookie"].split(";")[0]
    status, body, _ = send(router, "GET", "/auth/token", headers={"Cookie": cookie})
    assert status == 200 and body["token"].count(".") == 2


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 1500 + b"]" * 1500,  # 3 KB, 1,500 deep
        b'{"username": ' + b"[" * 1400 + b"]" * 1400 + b', "password": "x"}',
        b'{"username": [[[["alice"]]]], "password": "x"}',
        b"[]",
        b'"alice"',
        b"null",
        b"12",
        b'{"username": "alice"',
        b"\xff\xfe",
        b"",
    ],
    ids=["nested-arrays", "nested-in-object", "5-deep", "list", "string", "null", "number", "cut", "not-utf8", "empty"],
)
def test_a_body_that_is_not_a_small_json_object_is_refused_400_saying_what_to_send(router, payload):
    status, body, _ = login(router, payload)
    assert status == 400
    assert '{"username": "...", "password": "..."}' in body["error"]


def test_a_login_that_is_not_sent_as_json_is_refused_400(router):
    # A cross-site form can post text/plain without a preflight: it must not log anyone in.
    status, body, _ = login(router, ALICE, headers={"Content-Type": "text/plain"})
    assert status == 400 and "application/json" in body["error"]


# Rate limits get a node of their own: the session-wide `router` is shared by every router test,
# which all log in from 127.0.0.1. Each test here sends from its own loopback address.
ATTEMPTS_PER_MINUTE = 3
TRACKED_ADDRESSES = 2


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def limited(request, tmp_path_factory):
    def configure(config):
        issuer = config["workers"][0]["components"][0]["extra"]["issuer"]
        issuer.update(login_attempts_per_minute=ATTEMPTS_PER_MINUTE, login_tracked_addresses=TRACKED_ADDRESSES)

    node = RouterProcess(
        tmp_path_factory.mktemp(f"limits-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
        edit_config=configure, proxies=DEPLOYMENTS[request.param],
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def use_up(node, source: str) -> None:
    for _ in range(ATTEMPTS_PER_MINUTE):
        assert login(node, WRONG, source=source)[0] == 401


def test_past_the_limit_a_login_gets_429_with_retry_after_even_with_the_right_password(limited):
    use_up(limited, "127.0.0.2")
    status, body, headers = login(limited, WRONG, source="127.0.0.2")
    assert status == 429
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 60 / ATTEMPTS_PER_MINUTE
    assert body["retry_after"] == retry_after and f"Try again in {retry_after} s" in body["error"]
    # The right password too: were it let through, a guesser would learn which guess was right.
    assert login(limited, ALICE, source="127.0.0.2")[0] == 429
    # Another address has its own budget (behind the proxies too, where every peer is 127.0.0.1).
    assert login(limited, ALICE, source="127.0.0.3")[:2] == (200, {"authid": "alice", "roles": ["user"]})


def test_a_client_cannot_choose_its_address_with_x_forwarded_for(limited):
    use_up(limited, "127.0.0.4")
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7"}
    assert login(limited, ALICE, source="127.0.0.4", headers=forged)[0] == 429


def test_the_table_of_addresses_is_bounded_and_drops_the_least_recently_seen(limited):
    use_up(limited, "127.0.0.5")
    assert login(limited, WRONG, source="127.0.0.5")[0] == 429
    for other in ("127.0.0.6", "127.0.0.7"):  # TRACKED_ADDRESSES newer addresses push it out
        assert login(limited, WRONG, source=other)[0] == 401
    assert login(limited, ALICE, source="127.0.0.5")[0] == 200  # forgotten: a full bucket again


def test_a_bad_issuer_limit_stops_the_node_with_a_message_naming_it(tmp_path):
    def configure(config):
        config["workers"][0]["components"][0]["extra"]["issuer"]["login_attempts_per_minute"] = 0

    node = RouterProcess(tmp_path, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure)
    with pytest.raises(RuntimeError, match="'issuer.login_attempts_per_minute' must be a whole number from 1 to"):
        node.start()
    node.stop()
