"""production-config's --origin keeps the port the operator gives; the node config a router was
started with is read from the node directory's pid file; revoke's URL and answer."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from authenticator.config.node_config import started_config_file
from authenticator.ops.cli import main, revoke_answer
from authenticator.ops.wamp_call import router_address
from tests.support.router import REPO


@pytest.fixture
def cbdir(tmp_path):
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.json")
    return str(tmp_path)


def allowed_origins(output: str) -> tuple[list[str], list[str]]:
    router = json.loads(output)["workers"][0]
    ws = next(p for p in router["transports"][0]["paths"].values() if p.get("type") == "websocket")
    cookie = next(c for c in router["components"])["extra"]["cookie"]
    return ws["options"]["allowed_origins"], cookie["allowed_origins"]


@pytest.mark.parametrize(
    ("origin", "websocket", "browser"),
    [
        ("https://app.example.com:8443", "https://app.example.com:8443", "https://app.example.com:8443"),
        ("https://app.example.com", "https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com", "http://app.example.com:80", "http://app.example.com"),
        ("https://App.Example.com:8443/", "https://app.example.com:8443", "https://app.example.com:8443"),
    ],
)
def test_an_origin_keeps_the_port_given_and_without_one_means_the_schemes_default(cbdir, origin, websocket, browser):
    result = CliRunner().invoke(main, ["production-config", "--origin", origin, "--cbdir", cbdir])
    assert result.exit_code == 0, result.output
    assert allowed_origins(result.stdout) == ([websocket], [browser])


@pytest.mark.parametrize("origin", ["https://app.example.com/app", "app.example.com", "ftp://app.example.com",
                                    "https://app.example.com:0", "https://app.example.com:99999",
                                    "https://user@app.example.com"])  # fmt: skip
def test_an_origin_that_is_not_scheme_host_port_is_refused(cbdir, origin):
    result = CliRunner().invoke(main, ["production-config", "--origin", origin, "--cbdir", cbdir])
    assert result.exit_code == 2
    assert "an origin is scheme://host[:port], such as https://app.example.com (port 443) or " in result.output
    assert repr(origin) in result.output and '"workers"' not in result.output


def test_the_help_says_what_an_origin_without_a_port_means():
    text = " ".join(CliRunner().invoke(main, ["production-config", "--help"]).output.split())
    assert "without one, the scheme's default, 443 for https and 80 for http" in text


PID_FILE = {"pid": 4242, "argv": ["crossbar", "start", "--config", "config-production.json"],
            "options": {"cbdir": "/srv/.crossbar", "config": "config-production.json", "loglevel": "warn"}}  # fmt: skip


def test_the_pid_file_of_the_controller_names_the_config_it_loaded(tmp_path):
    assert started_config_file(tmp_path, json.dumps(PID_FILE), 4242) == tmp_path / "config-production.json"


@pytest.mark.parametrize(
    "text",
    [json.dumps({**PID_FILE, "pid": 4243}), json.dumps({**PID_FILE, "options": {"config": None}}), "{", "[]",
     json.dumps({**PID_FILE, "options": "config.json"}), json.dumps({**PID_FILE, "pid": True}),
     json.dumps({**PID_FILE, "options": {"config": "../../etc/passwd"}})],
    ids=["another-controller", "no-config", "not-json", "not-an-object", "options-not-an-object", "pid-true",
         "not-a-node-config-name"],
)  # fmt: skip
def test_a_pid_file_of_another_controller_or_without_a_config_names_none(tmp_path, text):
    """A stale file (a node that crashed) must not name the config of an earlier start."""
    assert started_config_file(tmp_path, text, 4242) is None
    if '"pid": true' in text:  # True == 1: the controller of a container
        assert started_config_file(tmp_path, text, 1) is None


@pytest.mark.parametrize(
    ("url", "address"),
    [("wss://router.example.com/ws", (True, "router.example.com", 443)),
     ("wss://router.example.com:8443/ws", (True, "router.example.com", 8443)),
     ("ws://127.0.0.1/ws", (False, "127.0.0.1", 80)), ("ws://[::1]:8080/ws", (False, "::1", 8080))],
)  # fmt: skip
def test_a_url_without_a_port_means_its_schemes_default(url, address):
    assert router_address(url) == address


@pytest.mark.parametrize("url", ["https://router.example.com/ws", "router.example.com:8080", "wss://h:99999/ws"])
def test_a_url_that_is_not_a_websocket_url_is_refused(url):
    with pytest.raises(ValueError, match="is not a WebSocket URL|Port out of range"):
        router_address(url)


def test_the_revoke_answer_is_printed_whole():
    answer = {"sessions_ended": 2, "tokens_issued_until": 1796300707.25}
    assert revoke_answer({"authid": "bob"}, answer).splitlines() == [
        "revoked: authid=bob",
        "tokens issued until: 2026-12-03 12:25:07 UTC (Unix 1796300707.250); the user's next token must be issued "
        "after it",
        "live sessions ended: 2",
    ]
    assert revoke_answer({"jti": "t-1"}, {"sessions_ended": 0}) == "revoked: jti=t-1\nlive sessions ended: 0"


def test_a_ca_file_that_is_missing_or_holds_no_certificate_is_one_line(tmp_path):
    args = ["revoke", "--authid", "bob", "--url", "wss://127.0.0.1:9/ws", "--realm", "realm1", "--token", "x"]
    missing = CliRunner().invoke(main, [*args, "--ca-file", str(tmp_path / "ca.pem")])
    assert missing.exit_code == 1
    assert missing.output == f"Error: --ca-file {tmp_path / 'ca.pem'}: cannot be read as PEM certificates " \
                             "(FileNotFoundError)\n"  # fmt: skip
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    empty = CliRunner().invoke(main, [*args, "--ca-file", str(tmp_path / "ca.pem")])
    assert empty.exit_code == 1
    assert empty.output == (
        f"Error: --ca-file {tmp_path / 'ca.pem'}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it\n"
    )


def test_a_node_config_crossbar_would_not_start_with_is_refused_by_name(tmp_path):
    """Crossbar reads .json and .yaml only: a check that passed config.yml would pass a node that
    does not start."""
    shutil.copy(REPO / ".crossbar" / "config.json", tmp_path / "config.yml")
    result = CliRunner().invoke(main, ["check", "--cbdir", str(tmp_path), "--config", "config.yml"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: configuration: {tmp_path / 'config.yml'} cannot be read: ValueError: crossbar start reads a node "
        "config named .json or .yaml, not .yml\n"
    )


def test_a_process_the_controller_started_finds_the_config_in_the_node_directory(tmp_path):
    import os

    from authenticator.config.node_config import CROSSBAR_PID_FILE, running_config_file

    assert running_config_file(tmp_path) is None  # no pid file: no node runs from here
    (tmp_path / CROSSBAR_PID_FILE).write_text(json.dumps({**PID_FILE, "pid": os.getppid()}))
    assert running_config_file(tmp_path) == tmp_path / "config-production.json"  # the parent's
    assert running_config_file(tmp_path, os.getppid() + 1) is None


def test_a_pid_file_that_is_a_link_a_fifo_or_huge_is_not_read(tmp_path):
    """The worker reads it at start: a link to /dev/zero or a FIFO must not hang it, a huge file
    must not be read whole; each names no config (the ready line then names none)."""
    import os

    from authenticator.config.node_config import CROSSBAR_PID_FILE, MAX_PID_FILE_BYTES, running_config_file

    pid_file = tmp_path / CROSSBAR_PID_FILE
    good = json.dumps({**PID_FILE, "pid": os.getppid()})
    pid_file.symlink_to("/dev/zero")
    assert running_config_file(tmp_path) is None
    pid_file.unlink()
    os.mkfifo(pid_file)
    assert running_config_file(tmp_path) is None  # returns at once: not opened for a blocking read
    pid_file.unlink()
    pid_file.write_text(good + " " * MAX_PID_FILE_BYTES)
    assert running_config_file(tmp_path) is None
    pid_file.write_text(good)  # the same file, small: read
    assert running_config_file(tmp_path) == tmp_path / "config-production.json"

