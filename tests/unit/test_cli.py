"""python -m authenticator token | decode | explain, against a copy of the shipped config."""

import json
import shutil

import jwt
import pytest
from click.testing import CliRunner

from authenticator.config.node_config import component_extra
from authenticator.ops.cli import main
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET, mint


@pytest.fixture
def cbdir(tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.json")
    return str(tmp_path)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_token_prints_a_token_signed_with_the_configured_secret(cbdir):
    result = run("token", "--sub", "alice", "--roles", "user,admin", "--ttl", "60", "--cbdir", cbdir)
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["roles"] == ["user", "admin"]
    assert claims["exp"] - claims["iat"] == 60 and claims["jti"]


def test_token_without_a_secret_generates_the_same_file_the_router_would(tmp_path, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.json")
    result = run("token", "--sub", "alice", "--cbdir", str(tmp_path))
    secret = (tmp_path / "jwt-secret.key").read_text()  # exactly the secret, no newline
    assert jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "alice"


def test_decode_accepts_a_good_token_and_prints_its_claims(cbdir):
    result = run("decode", mint("alice", ["user"]), "--cbdir", cbdir)
    assert result.exit_code == 0
    assert "ACCEPTED authid=alice role=user" in result.output


def test_decode_names_the_reason_a_token_would_be_refused(cbdir):
    result = run("decode", mint("alice", ["user"], ttl=-60), "--cbdir", cbdir)
    assert result.exit_code == 1
    assert "REFUSED authenticator.error.expired" in result.output


def test_explain_says_which_rule_decided_and_whether_it_is_cacheable(cbdir):
    allowed = run(
        "explain", "--authid", "alice", "--role", "user", "subscribe", "app.user.alice.notifications", "--cbdir", cbdir
    )
    denied = run(
        "explain", "--authid", "bob", "--role", "user", "subscribe", "app.user.alice.notifications", "--cbdir", cbdir
    )
    assert allowed.exit_code == 0 and "ALLOW" in allowed.output and "rule #2" in allowed.output
    assert "cacheable by Crossbar: no" in allowed.output
    assert denied.exit_code == 1 and "DENY" in denied.output and "step 5" in denied.output


def test_explain_takes_authid_and_roles_from_a_token(cbdir):
    result = run(
        "explain",
        "--token",
        mint("root", ["user", "admin"]),
        "--match",
        "prefix",
        "subscribe",
        "app.",
        "--cbdir",
        cbdir,
    )
    assert result.exit_code == 0 and "role=admin" in result.output


def test_a_missing_config_says_where_to_point(tmp_path):
    result = run("decode", "x.y.z", "--cbdir", str(tmp_path))
    assert result.exit_code == 1 and "pass --cbdir" in result.output


def test_every_command_says_where_its_keys_came_from_on_stderr(cbdir):
    result = run("decode", mint("alice", ["user"]), "--cbdir", cbdir)
    assert result.stderr.splitlines()[0] == "keys: HS256 from environment variable JWT_SECRET"
    assert "keys:" not in result.stdout


def test_secret_prints_the_routers_secret_as_a_shell_line_and_generates_it_first(tmp_path, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.json")
    result = run("secret", "--cbdir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"export JWT_SECRET={(tmp_path / 'jwt-secret.key').read_text()}\n"
    assert f"from {tmp_path / 'jwt-secret.key'} (generated at this start)" in result.stderr
    again = run("secret", "--cbdir", str(tmp_path))
    assert again.stdout == result.stdout


def test_secret_prints_the_development_secret_even_with_another_jwt_secret_in_the_shell(tmp_path, monkeypatch):
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.json")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    development = run("secret", "--cbdir", str(tmp_path)).stdout
    monkeypatch.setenv("JWT_SECRET", "another-secret-of-this-shell-" + "x" * 20)
    result = run("secret", "--cbdir", str(tmp_path))
    assert result.exit_code == 0 and result.stdout == development
    assert "JWT_SECRET in this shell differs" in result.stderr


def test_check_passes_the_shipped_configs_without_creating_a_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    for name in ("config.json", "config-proxies.json"):
        shutil.copy(REPO / ".crossbar" / name, tmp_path / name)
        result = run("check", "--cbdir", str(tmp_path), "--config", name)
        assert result.exit_code == 0, result.output
        roles = ", ".join(r["name"] for r in component_extra(REPO / ".crossbar" / "config.json")["policy"]["roles"])
        assert result.stdout.startswith(f"OK {tmp_path / name}: roles {roles}")
    assert not (tmp_path / "jwt-secret.key").exists()


def test_check_names_each_problem_with_its_place_and_fails(tmp_path):
    config = json.loads((REPO / ".crossbar" / "config.json").read_text())
    roles = config["workers"][0]["realms"][0]["roles"]
    config["workers"][0]["realms"][0]["roles"] = [r for r in roles if r["name"] != "admin"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run("check", "--cbdir", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path / 'config.json'}: workers[0].realms[0].roles: the policy role 'admin'")
