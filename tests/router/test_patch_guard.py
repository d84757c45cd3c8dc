"""A node on a Crossbar/Autobahn version our patches were not verified on refuses to start, one line
per patch, unless the operator accepted exactly that version (and then every start says so).

The version is faked the way an upgrade would show it: a distribution's metadata earlier on the
path (importlib.metadata reads the first one found), inherited by every worker."""

import pytest
import pytest_twisted

from authenticator.patches import ACCEPT_VARIABLE, PATCHES
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint
from tests.support.wamp import connect

FAKE_AUTOBAHN = "99.0.0"


def metadata_of(tmp_path, distribution: str, version: str) -> str:
    site = tmp_path / "upgraded"
    info = site / f"{distribution}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    return str(site)


def patches_of(distribution: str) -> set[str]:
    return {p.name for p in PATCHES if any(dist == distribution for dist, _ in p.verified)}


def test_an_unverified_autobahn_stops_the_start_with_one_line_per_patch_that_touches_it(tmp_path):
    env = {"JWT_SECRET": TEST_SECRET, "PYTHONPATH": metadata_of(tmp_path, "autobahn", FAKE_AUTOBAHN)}
    node = RouterProcess(tmp_path / "node", env=env, loglevel="warn")
    try:
        with pytest.raises(RuntimeError) as caught:
            node.start()
    finally:
        node.stop()
    assert "Traceback" not in caught.value.args[0]
    lines = [line for line in node.log().splitlines() if "CONFIGURATION ERROR: patch '" in line]
    named = {line.split("patch '")[1].split("'")[0] for line in lines}
    assert named == patches_of("autobahn") and len(lines) == len(named), lines
    assert all(f"{ACCEPT_VARIABLE}=autobahn=={FAKE_AUTOBAHN}" in line for line in lines)


@pytest_twisted.ensureDeferred
async def test_an_accepted_version_starts_and_every_start_says_which_patches_run_unverified(tmp_path):
    env = {
        "JWT_SECRET": TEST_SECRET,
        "PYTHONPATH": metadata_of(tmp_path, "autobahn", FAKE_AUTOBAHN),
        ACCEPT_VARIABLE: f"autobahn=={FAKE_AUTOBAHN}",
    }
    node = RouterProcess(tmp_path / "node", env=env, loglevel="warn").start()
    try:
        for name in patches_of("autobahn"):
            node.wait_for_log(f"patch '{name}' runs on autobahn=={FAKE_AUTOBAHN}, on which it was not verified")
        client = await connect(node.url, mint("alice", ["user"]))
        assert client.details.authid == "alice"
        client.leave()
    finally:
        assert node.stop() == 0
