import pytest

from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET


@pytest.fixture(scope="session")
def router(tmp_path_factory):
    """One real crossbar node for the router tests, with the shipped config on a free port."""
    node = RouterProcess(tmp_path_factory.mktemp("router"), env={"JWT_SECRET": TEST_SECRET}).start()
    yield node
    assert node.stop() == 0, node.log()[-3000:]
