from collections.abc import Mapping
from pathlib import Path

import pytest

from authenticator.config.node_config import component_extra
from authenticator.config.settings import Settings, load_settings
from authenticator.core.tokens import TokenVerifier
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET

NOW = 1_800_000_000.0


def settings_with_secret(extra: Mapping, cbdir: Path, secret: str = TEST_SECRET) -> Settings:
    """Settings from `extra` whose one key is `secret` (HS256), read from a 0600 file in cbdir.
    Nothing comes from the process environment: a JWT_SECRET set there changes nothing, and no
    test has to set one."""
    key_file = cbdir / "test-jwt-secret.key"
    key_file.write_text(secret)
    key_file.chmod(0o600)
    extra = {**extra, "keys": [{"algorithms": ["HS256"], "secret_file": key_file.name}]}
    return load_settings(extra, cbdir, generate_secret=False)


@pytest.fixture
def shipped_extra():
    """The authenticator extra of the shipped .crossbar/config.json."""
    return component_extra(REPO / ".crossbar" / "config.json")


@pytest.fixture
def settings(shipped_extra, monkeypatch, tmp_path):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    return load_settings(shipped_extra, tmp_path)


@pytest.fixture
def verifier(settings):
    return TokenVerifier(settings, clock=lambda: NOW)
