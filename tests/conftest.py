import pytest

from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET

# The shipped single-worker config, and the scale-out config derived from it (two proxy workers
# sharing the public port in front of the router worker): every router test that takes the
# `router` fixture runs against both.
DEPLOYMENTS = {"single-worker": 0, "2-proxies": 2}


@pytest.fixture(scope="session", params=list(DEPLOYMENTS))
def router(request, tmp_path_factory):
    """One real crossbar node per deployment for the router tests, on a free port."""
    node = RouterProcess(
        tmp_path_factory.mktemp(request.param), env={"JWT_SECRET": TEST_SECRET}, proxies=DEPLOYMENTS[request.param]
    ).start()
    yield node
    assert node.stop() == 0, node.log()[-3000:]
