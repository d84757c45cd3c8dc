import pytest

from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET

# The shipped single-worker config, and the scale-out config derived from it (two proxy workers
# sharing the public port in front of the router worker): every router test that takes the
# `router` fixture runs against both.
DEPLOYMENTS = {"single-worker": 0, "2-proxies": 2}


def _shared_node(deployment: str, tmp_path_factory):
    node = RouterProcess(
        tmp_path_factory.mktemp(deployment), env={"JWT_SECRET": TEST_SECRET}, proxies=DEPLOYMENTS[deployment]
    ).start()
    yield node
    assert node.stop() == 0, node.log()[-3000:]


# One node per deployment for the whole session, each started when a test first needs it. Two
# fixtures, not one parametrized session fixture: pytest keeps one instance of a parametrized
# fixture at a time, so a process that runs one file after another (make test runs two) stopped
# and started a node at every switch between deployments.
@pytest.fixture(scope="session")
def single_worker_node(tmp_path_factory):
    yield from _shared_node("single-worker", tmp_path_factory)


@pytest.fixture(scope="session")
def proxies_node(tmp_path_factory):
    yield from _shared_node("2-proxies", tmp_path_factory)


@pytest.fixture(params=list(DEPLOYMENTS))
def router(request):
    """The real crossbar node of the test's deployment, shared by every router test of the session."""
    return request.getfixturevalue("single_worker_node" if request.param == "single-worker" else "proxies_node")
