"""A Redis URL shown in logs carries no password; a URL with one is a secret (authenticator/core/redis_url.py)."""

import pytest

from authenticator.core.redis_url import holds_secret, shown


@pytest.mark.parametrize(("url", "expected", "secret"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", False),
    ("redis://:s3cret@redis.internal:6379/0", "redis://redis.internal:6379/0", True),
    ("rediss://user:s3cret@redis.internal/1?ssl_cert_reqs=required", "rediss://redis.internal/1", True),
    ("redis://s3cret@redis.internal/0", "redis://redis.internal/0", True),
    ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock", True),
    ("unix:///run/redis.sock?PASSWORD=s3cret", "unix:///run/redis.sock", True),
    ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock", False),
])  # fmt: skip
def test_the_shown_url_has_no_password_and_a_password_anywhere_makes_it_secret(url, expected, secret):
    assert shown(url) == expected
    assert "s3cret" not in shown(url)
    assert holds_secret(url) is secret
