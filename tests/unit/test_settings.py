"""The authenticator's configuration is validated at start; each bad value is named."""

import pytest

from authenticator.settings import ConfigError, component_extra, load_settings
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET

SHIPPED = component_extra(REPO / ".crossbar" / "config.json")


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"unknown_option": 1}, "unknown_option"),
        ({"single_use": "yes"}, "'single_use'"),
        ({"max_token_bytes": 10}, "'max_token_bytes'"),
        ({"session": {"expiry_grace_seconds": -1}}, "'session.expiry_grace_seconds'"),
        ({"session": {"behind_proxies": "yes"}}, "'session.behind_proxies'"),
        (
            {"session": {"behind_proxy": True}},
            "'session' has unknown key 'behind_proxy' (did you mean 'behind_proxies'?)",
        ),
        ({"session": []}, "'session' must be an object"),
        ({"claims": {"leeway_second": 3}}, "'claims' has unknown key 'leeway_second' (did you mean 'leeway_seconds'?)"),
        ({"limits": {"max_uri_lenght": 99}}, "'max_uri_lenght' (did you mean 'max_uri_length'?)"),
        ({"store": {"redis": "redis://x"}}, "'store' has unknown key 'redis' (did you mean 'redis_url'?)"),
        ({"keys": [{"secret_evn": "JWT_SECRET"}]}, "keys[0] has unknown key 'secret_evn' (did you mean 'secret_env'?)"),
        ({"polcy": {}}, "'polcy' (did you mean 'policy'?)"),
        (
            {"issuer": {"token_ttl_second": 60}},
            "'issuer' has unknown key 'token_ttl_second' (did you mean 'token_ttl_seconds'?)",
        ),
        ({"issuer": {"max_body_bytes": 1}}, "'issuer.max_body_bytes' must be a whole number"),
        ({"anonymous_role": []}, "'anonymous_role' must be a role name"),
        ({"keys": [{"secret_env": 5}]}, "keys[0].secret_env must be a non-empty string"),
        ({"bearer_header": 1}, "'bearer_header'"),
        ({"store": {"redis_url": "http://x"}}, "'store.redis_url'"),
        ({"cookie": {"name": "c"}}, "'cookie.allowed_origins'"),
        ({"claims": {"leeway_seconds": 1000}}, "'claims.leeway_seconds'"),
        ({"keys": [{"algorithms": ["none"], "secret_env": "JWT_SECRET"}]}, "unsupported algorithm none"),
        ({"keys": []}, "'keys'"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(tmp_path, change, named):
    with pytest.raises(ConfigError) as refused:
        load_settings({**SHIPPED, **change}, tmp_path)
    assert named in str(refused.value)


def test_the_shipped_configuration_loads(tmp_path):
    settings = load_settings(SHIPPED, tmp_path)
    assert settings.behind_proxies is False and settings.expiry_grace_seconds == 5
