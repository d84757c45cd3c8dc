"""The documented publisher examples (docs/issuers/publish.*, the README's curl line), each run as
printed against the real router: bob receives what they publish, as from the backend."""

import shutil
import subprocess
import sys

import pytest
import pytest_twisted
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import threads

from tests.router.test_issuers import EXAMPLES
from tests.support.snippets import readme_snippet
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect

PATH = "/usr/bin:/bin"


def _tool(name: str) -> str:
    found = shutil.which(name, path=PATH)
    if found is None:
        pytest.fail(f"{name} is missing: make test installs Debian's php-cli and php-curl")
    return found


EXAMPLE_COMMANDS = {
    "python-urllib": lambda: [sys.executable, str(EXAMPLES / "publish.py")],
    "node-fetch": lambda: ["node", str(EXAMPLES / "publish.js")],
    "php-curl": lambda: [_tool("php"), str(EXAMPLES / "publish.php")],
    "curl": lambda: ["sh", str(EXAMPLES / "publish.sh")],
    # as printed, but for the test router's port
    "readme-curl": lambda: ["bash", "-c", readme_snippet("**curl: publish**", "sh")],
}


@pytest.mark.parametrize("example", list(EXAMPLE_COMMANDS))
@pytest_twisted.ensureDeferred
async def test_each_documented_publisher_reaches_bob(router, example):
    bob_id = "bob" if example == "readme-curl" else unique("bob")  # the README publishes to bob
    bob = await connect(router.url, mint(bob_id))
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, f"app.user.{bob_id}.notifications", options=SubscribeOptions(details_arg="details"))
        env = {
            "JWT_SECRET": TEST_SECRET, "PATH": PATH, "PUBLISH_URL": f"http://127.0.0.1:{router.port}/publish",
            "TOKEN": mint("billing", ["backend"], ttl=60),  # for the curl examples: your backend mints it
        }  # fmt: skip
        if example == "readme-curl":
            command = EXAMPLE_COMMANDS[example]()
            command[-1] = command[-1].replace("http://127.0.0.1:8080", f"http://127.0.0.1:{router.port}")
        else:
            command = [*EXAMPLE_COMMANDS[example](), f"app.user.{bob_id}.notifications", "Your report is ready"]
        result = await threads.deferToThread(
            subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert '"id"' in result.stdout
        args, kwargs = await inbox.next()
        assert args == ("Your report is ready",)
        assert (kwargs["details"].publisher_authid, kwargs["details"].publisher_authrole) == ("billing", "backend")
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_the_php_example_says_why_when_refused(router):
    result = await threads.deferToThread(
        subprocess.run, [_tool("php"), str(EXAMPLES / "publish.php"), "app.secret.plans", "x"],
        env={"JWT_SECRET": TEST_SECRET, "PATH": PATH, "PUBLISH_URL": f"http://127.0.0.1:{router.port}/publish"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("403: ") and "wamp.error.not_authorized" in result.stderr
