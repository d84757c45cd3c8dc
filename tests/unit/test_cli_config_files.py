"""Every command of python -m authenticator reads the node config that `crossbar start --cbdir DIR
[--config FILE]` reads: a file of another name, JSON or YAML, or without --config Crossbar's own
choice (config.yaml, then config.json). Beside the shipped config.json the node directory holds a
staging config whose key, policy and port differ, so an answer from the wrong file shows."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from types import SimpleNamespace

import jwt
import pytest
import yaml
from click.testing import CliRunner

from authenticator.config.node_config import find_component
from authenticator.ops.cli import main
from tests.support.router import REPO, free_port
from tests.support.tokens import TEST_SECRET, mint

STAGING_SECRET = "staging-" + secrets.token_urlsafe(32)
STAGING_KEY = {"algorithms": ["HS256"], "secret_env": "STAGING_JWT_SECRET", "secret_file": "staging-secret.key"}
STAGING_RULE = {"uri": "app.staging.", "match": "prefix", "allow": {"subscribe": True}}


def shipped() -> dict:
    return json.loads((REPO / ".crossbar" / "config.json").read_text())


def extra_of(config: dict) -> dict:
    return config["workers"][0]["components"][0]["extra"]


def staging_config(port: int) -> dict:
    config = shipped()
    extra = extra_of(config)
    extra["keys"] = [dict(STAGING_KEY)]
    next(r for r in extra["policy"]["roles"] if r["name"] == "user")["rules"].append(dict(STAGING_RULE))
    config["workers"][0]["transports"][0]["endpoint"]["port"] = port
    return config


def write(path, config: dict) -> None:
    if path.suffix == ".yaml":
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        path.write_text(json.dumps(config, indent=2))


@pytest.fixture(params=["config-staging.json", "config-staging.yaml"])
def node(request, tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("STAGING_JWT_SECRET", STAGING_SECRET)
    write(tmp_path / "config.json", shipped())
    port = free_port()  # nothing listens there
    write(tmp_path / request.param, staging_config(port))
    return SimpleNamespace(cbdir=str(tmp_path), name=request.param, path=tmp_path / request.param, port=port)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_every_command_takes_cbdir_and_config():
    for name, command in main.commands.items():
        options = {p.name for p in command.params}
        assert {"cbdir", "config_name"} <= options, f"{name} lacks --cbdir or --config"


def test_token_is_signed_with_the_key_of_the_config_named(node):
    staging = run("token", "--sub", "alice", "--cbdir", node.cbdir, "--config", node.name)
    default = run("token", "--sub", "alice", "--cbdir", node.cbdir)
    assert staging.exit_code == 0 and default.exit_code == 0, staging.output + default.output
    assert jwt.decode(staging.stdout.strip(), STAGING_SECRET, algorithms=["HS256"])["sub"] == "alice"
    assert staging.stderr.splitlines()[0] == "keys: HS256 from environment variable STAGING_JWT_SECRET"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(staging.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert jwt.decode(default.stdout.strip(), TEST_SECRET, algorithms=["HS256"])["sub"] == "alice"


def test_decode_verifies_with_the_key_of_the_config_named(node):
    token = mint("alice", ["user"], secret=STAGING_SECRET)
    accepted = run("decode", token, "--cbdir", node.cbdir, "--config", node.name)
    refused = run("decode", token, "--cbdir", node.cbdir)
    assert accepted.exit_code == 0 and "ACCEPTED authid=alice role=user" in accepted.output, accepted.output
    assert refused.exit_code == 1 and "REFUSED authenticator.error.invalid_signature" in refused.output, refused.output


def test_explain_decides_with_the_policy_of_the_config_named(node):
    args = ("explain", "--authid", "alice", "--role", "user", "subscribe", "app.staging.news", "--cbdir", node.cbdir)
    allowed = run(*args, "--config", node.name)
    denied = run(*args)
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith("ALLOW subscribe exact 'app.staging.news'")
    shipped = json.loads((REPO / ".crossbar" / "config.json").read_text())
    roles = find_component(shipped)[3]["extra"]["policy"]["roles"]
    user_rules = next(r for r in roles if r["name"] == "user")["rules"]
    assert f"rule #{len(user_rules) + 1} (prefix 'app.staging.')" in allowed.stdout  # the rule appended to them
    assert denied.exit_code == 1 and denied.stdout.startswith("DENY subscribe exact 'app.staging.news'")


def test_secret_prints_the_development_secret_of_the_config_named(node, monkeypatch):
    monkeypatch.delenv("STAGING_JWT_SECRET")
    result = run("secret", "--cbdir", node.cbdir, "--config", node.name)
    assert result.exit_code == 0, result.output
    generated = (node.path.parent / "staging-secret.key").read_text()
    assert result.stdout == f"export STAGING_JWT_SECRET={generated}\n"
    assert not (node.path.parent / "jwt-secret.key").exists()  # the default config's file is not touched


def test_check_reads_the_config_named(node):
    result = run("check", "--cbdir", node.cbdir, "--config", node.name)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK {node.path}: roles ")
    assert result.stdout.endswith("keys: HS256 from environment variable STAGING_JWT_SECRET\n")


def test_the_derived_configs_come_from_the_config_named(node):
    proxies = run("proxy-config", "--cbdir", node.cbdir, "--config", node.name)
    production = run("production-config", "--cbdir", node.cbdir, "--config", node.name)
    for result in proxies, production:
        assert result.exit_code == 0, result.output
        components = [c for w in json.loads(result.stdout)["workers"] for c in w.get("components", [])]
        (key,) = extra_of({"workers": [{"components": components}]})["keys"]
        assert key["secret_env"] == "STAGING_JWT_SECRET"


def test_revoke_connects_to_the_websocket_of_the_config_named(node):
    """The real CLI, as a process: its one-shot WAMP client runs a reactor of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "authenticator", "revoke", "--authid", "bob", "--cbdir", node.cbdir,
         "--config", node.name],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 1, result
    url, address = f"ws://127.0.0.1:{node.port}/ws", f"127.0.0.1:{node.port}"
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: cannot reach the router at {url} ({address}): ConnectionRefusedError"
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_without_config_crossbars_own_choice_config_yaml_comes_before_config_json(tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("STAGING_JWT_SECRET", STAGING_SECRET)
    write(tmp_path / "config.json", shipped())
    write(tmp_path / "config.yaml", staging_config(free_port()))
    checked = run("check", "--cbdir", str(tmp_path))
    assert checked.exit_code == 0 and checked.stdout.startswith(f"OK {tmp_path / 'config.yaml'}: "), checked.output
    token = run("token", "--sub", "alice", "--cbdir", str(tmp_path)).stdout.strip()
    assert jwt.decode(token, STAGING_SECRET, algorithms=["HS256"])["sub"] == "alice"


def test_a_config_that_does_not_exist_or_is_not_yaml_is_one_line(tmp_path):
    missing = run("token", "--sub", "alice", "--cbdir", str(tmp_path), "--config", "config-staging.yaml")
    assert missing.exit_code == 1
    assert missing.output == (
        f"Error: configuration: {tmp_path / 'config-staging.yaml'} does not exist; pass --cbdir pointing at "
        "your .crossbar folder (and --config naming the node config in it)\n"
    )
    (tmp_path / "config-staging.yaml").write_text("workers: [\n")
    broken = run("check", "--cbdir", str(tmp_path), "--config", "config-staging.yaml")
    assert broken.exit_code == 1
    assert broken.output == (
        f"Error: configuration: {tmp_path / 'config-staging.yaml'} cannot be read: ParserError: expected the node "
        "content, but found '<stream end>' (line 2, column 1)\n"
    )


SHAPES = [
    ({"workers": 5}, "'workers' must be a list of objects"),
    ({"workers": [5]}, "workers[0] must be an object"),
    ({"workers": [{"components": [7]}]}, "workers[0].components must be a list of objects"),
    ({"workers": [{"components": [{"classname": "authenticator.server.component.AuthenticatorComponent",
                                   "extra": [1]}]}]}, "workers[0].components[0].extra must be an object"),
    ({"workers": []}, "has no component with classname authenticator.server.component.AuthenticatorComponent"),
]  # fmt: skip


@pytest.mark.parametrize("command", [["check"], ["token", "--sub", "a"], ["proxy-config"], ["production-config"]])
@pytest.mark.parametrize(("config", "problem"), SHAPES, ids=[problem[:30] for _, problem in SHAPES])
def test_a_node_config_of_the_wrong_shape_is_one_line_saying_where(tmp_path, command, config, problem):
    from click.testing import CliRunner

    from authenticator.ops.cli import main

    (tmp_path / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, [*command, "--cbdir", str(tmp_path)])
    assert result.exit_code == 1 and not isinstance(result.exception, (TypeError, AttributeError, IndexError))
    assert result.output.strip().splitlines() == [result.output.strip()] and problem in result.output, result.output
