"""The documented publisher examples (docs/issuers/publish.*, the README's curl line), each run as
printed against the real router: bob receives what they publish, as from the backend."""

import json
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
import pytest_twisted
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import threads

from tests.router.test_issuers import EXAMPLES
from tests.support.flaky_gateway import FlakyGateway
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


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def run_until_it_retries_then_open(command, env, gateway: FlakyGateway):
    """Start the example while nothing listens on the gateway's port; once it says it will retry
    (its first attempt was refused), open the gateway; then wait for it to finish."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = ""
    while "retrying" not in first:  # curl says why first; then the example says it will retry
        line = process.stderr.readline()
        if not line:
            break  # it ended without retrying: the assertions say how
        first += line
    gateway.open()
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, first + err


@pytest.mark.parametrize("example", ["python-urllib", "node-fetch", "php-curl", "curl"])
@pytest_twisted.ensureDeferred
async def test_each_example_publishes_once_through_a_router_that_was_down_then_busy_then_lost_its_answer(
    single_worker_node, example
):
    """Issue 22: the example starts while nothing accepts on its port (connection refused), then
    meets a 503 with Retry-After: 2, then a connection closed after the router published but
    before the answer came back; every attempt carries the one Idempotency-Key. Bob receives the
    publication once: his next event is the marker."""
    router = single_worker_node
    bob_id = unique("bob")
    bob = await connect(router.url, mint(bob_id))
    gateway = FlakyGateway(router.port, ["503", "drop"], retry_after=2)
    try:
        inbox = Inbox()
        topic = f"app.user.{bob_id}.notifications"
        await bob.subscribe(inbox, topic, options=SubscribeOptions(details_arg="details"))
        env = {
            "JWT_SECRET": TEST_SECRET, "PATH": PATH, "PUBLISH_URL": f"http://127.0.0.1:{gateway.port}/publish",
            "TOKEN": mint("billing", ["backend"], ttl=120),
        }  # fmt: skip
        command = [*EXAMPLE_COMMANDS[example](), topic, "Your report is ready"]
        code, out, err = await threads.deferToThread(run_until_it_retries_then_open, command, env, gateway)
        assert code == 0, err
        assert [line for line in err.splitlines() if "retrying" in line][0].startswith("publish: attempt 1 failed"), err
        assert [step for _, step, _ in gateway.requests] == ["503", "drop", "pass"], err
        keys = {headers.get("idempotency-key") for _, _, headers in gateway.requests}
        assert len(keys) == 1 and UUID.match(keys.pop() or ""), gateway.requests
        busy, dropped = gateway.requests[0][0], gateway.requests[1][0]
        assert dropped - busy >= 1.9, "the 503's Retry-After: 2 was not waited for"
        published = json.loads(out)["id"]
        args, kwargs = await inbox.next()
        assert args == ("Your report is ready",) and kwargs["details"].publication == published
        status, answer = await threads.deferToThread(post_marker, router, topic)
        assert status == 200, answer
        assert (await inbox.next())[0] == ("marker",)
        assert inbox.events == []  # nothing but the one publication and the marker
    finally:
        gateway.close()
        bob.leave()


def post_marker(router, topic: str):
    request = urllib.request.Request(
        f"http://127.0.0.1:{router.port}/publish", data=json.dumps({"topic": topic, "args": ["marker"]}).encode(),
        headers={"Authorization": f"Bearer {mint('billing', ['backend'])}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)
