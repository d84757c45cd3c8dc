import pytest

from authenticator.settings import component_extra, load_settings
from authenticator.tokens import TokenVerifier
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET

NOW = 1_800_000_000.0


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
