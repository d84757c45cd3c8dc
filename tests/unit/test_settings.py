"""The authenticator's configuration is validated at start; each bad value is named."""

import pytest

from authenticator.config.node_config import component_extra
from authenticator.config.settings import ConfigError, load_settings
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
        ({"issuer": {"max_shares": 0}}, "'issuer.max_shares' must be a whole number from 1 to 100000"),
        (
            {"issuer": {"share_min_seconds": 600, "share_max_seconds": 60}},
            "'issuer.share_min_seconds' must not be more than 'issuer.share_max_seconds'",
        ),
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


def test_production_never_generates_a_secret_even_where_a_secret_file_is_named(shipped_extra, tmp_path):
    from authenticator.config.settings import ConfigError, load_settings

    extra = {
        **shipped_extra,
        "generate_secret": False,
        "keys": [{"algorithms": ["HS256"], "secret_env": "CBJWT_UNSET_TEST_VARIABLE", "secret_file": "prod.key"}],
    }
    with pytest.raises(ConfigError, match="create .*prod.key"):
        load_settings(extra, tmp_path, generate_secret=True)
    assert not (tmp_path / "prod.key").exists()
    with pytest.raises(ConfigError, match="'generate_secret' must be true or false"):
        load_settings({**shipped_extra, "generate_secret": "no"}, tmp_path)


def test_trusted_proxies_are_ip_addresses(shipped_extra, tmp_path, monkeypatch):
    from authenticator.config.settings import ConfigError, load_settings

    monkeypatch.setenv("JWT_SECRET", "x" * 40)
    assert load_settings({**shipped_extra, "trusted_proxies": ["127.0.0.1", "::1"]}, tmp_path).trusted_proxies == {
        "127.0.0.1", "::1"}  # fmt: skip
    for bad in (["nginx.local"], "127.0.0.1", [1]):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            load_settings({**shipped_extra, "trusted_proxies": bad}, tmp_path)
