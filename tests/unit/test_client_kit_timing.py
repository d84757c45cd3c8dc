"""When the client kits refresh and retry: by the router's clock, before exp, never under 0.5 s;
retries from 0.5 s growing to at most 1.5 s with ±10 % jitter. The JavaScript kit's function is
run under node and must give the same answers as the Python kit's."""

import json
import shutil
import subprocess

import pytest

from authenticator.client import Backoff, refresh_delay
from tests.support.router import REPO

CASES = [
    (3, 2.0),  # a 3-second token: a third of it ahead
    (60, 50.0),  # 10 s ahead
    (600, 590.0),  # a cached 1-hour token with 10 minutes left: before exp, not a third of 3,600 s in
    (-7, 0.5),  # admitted within the leeway, already past exp: at once
    (0.9, 0.6),
]


@pytest.mark.parametrize(("expires_in", "delay"), CASES)
def test_the_python_kit_refreshes_before_exp_by_the_routers_clock(expires_in, delay):
    assert refresh_delay(expires_in) == pytest.approx(delay)
    assert refresh_delay(expires_in) < max(expires_in, 0.6)


def test_the_javascript_kit_times_its_refresh_like_the_python_kit(tmp_path):
    if shutil.which("node") is None:
        pytest.fail("node is missing: make test installs the test dependencies")
    shutil.copy(REPO / "web" / "crossbar-jwt.js", tmp_path / "kit.mjs")
    script = (
        "import { refreshDelay } from './kit.mjs';"
        f"console.log(JSON.stringify({json.dumps([c[0] for c in CASES])}.map(e => refreshDelay(e))));"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=30)  # fmt: skip
    assert json.loads(out.stdout) == pytest.approx([c[1] for c in CASES])


def test_retries_start_under_a_second_and_grow_to_at_most_1_5_s_with_jitter():
    backoff = Backoff()
    low = [backoff.delay(n, rand=lambda: 0.0) for n in range(8)]
    high = [backoff.delay(n, rand=lambda: 1.0) for n in range(8)]
    middle = [backoff.delay(n, rand=lambda: 0.5) for n in range(8)]
    assert middle == pytest.approx([0.5, 0.75, 1.125, 1.5, 1.5, 1.5, 1.5, 1.5])
    assert low[0] == pytest.approx(0.45) and high[0] == pytest.approx(0.55)  # ±10 %
    assert max(high) <= 1.5 and all(a <= b for a, b in zip(middle, middle[1:], strict=False))
