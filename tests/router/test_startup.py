"""Start-up behaviour of the node: a generated demo secret, and configurations it refuses."""

import os
import stat

import pytest
import pytest_twisted

from tests.support.router import RouterProcess
from tests.support.tokens import mint
from tests.support.wamp import connect


@pytest.fixture
def node_without_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    node = RouterProcess(tmp_path, loglevel="warn")  # as make run: the path must show at warn
    node.env = env
    yield node
    node.stop()


@pytest_twisted.ensureDeferred
async def test_first_start_generates_a_private_secret_and_later_starts_reuse_it(node_without_secret):
    node = node_without_secret.start()
    secret_file = node.cbdir / "jwt-secret.key"
    secret = secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret) >= 32
    assert str(secret_file) in node.log() and secret not in node.log()

    client = await connect(node.url, mint("alice", ["user"], secret=secret))
    client.leave()

    node.restart()
    assert secret_file.read_text().strip() == secret
    client = await connect(node.url, mint("alice", ["user"], secret=secret))
    assert client.details.authid == "alice"
    client.leave()


def _break_policy(config):
    extra = config["workers"][0]["components"][0]["extra"]
    extra["policy"]["roles"][1]["rules"][0]["match"] = "glob"


def test_a_bad_policy_stops_the_start_with_a_message_naming_the_rule(tmp_path):
    node = RouterProcess(tmp_path, env={"JWT_SECRET": "s" * 40}, edit_config=_break_policy)
    with pytest.raises(RuntimeError) as caught:
        node.start()
    assert "role 'user' rule #1: 'match' must be one of exact, prefix, wildcard" in str(caught.value)


def test_a_short_secret_stops_the_start_and_says_how_to_make_a_good_one(tmp_path):
    node = RouterProcess(tmp_path, env={"JWT_SECRET": "changeme"})
    with pytest.raises(RuntimeError) as caught:
        node.start()
    message = str(caught.value)
    assert "8 bytes; at least 32 are needed" in message and "secrets.token_urlsafe" in message
    assert "changeme" not in message
