"""The deployment files in docs/ say what docs/operations.md promises of them."""

import configparser
import shlex

from tests.support.router import REPO


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((REPO / "docs" / "systemd" / "crossbar-jwt.service").read_text())
    return parser


def test_the_systemd_unit_runs_the_production_profile():
    service = unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[1:3] == ["start", "--cbdir"]
    assert command[command.index("--config") + 1] == "config-production.json"
    assert (REPO / ".crossbar" / "config-production.json").exists()
    assert command[command.index("--loglevel") + 1] == "warn"
    assert service["KillSignal"] == "SIGINT"  # Crossbar's clean stop: GOODBYE to clients, exit 0
    assert service["EnvironmentFile"].startswith("/etc/")  # secrets outside the unit and the repository
    assert "JWT_SECRET" not in service.get("Environment", "")
    # one descriptor per session; 20,000 sessions on one worker (bench/idle_sessions.py), twice that
    # behind proxies
    assert int(service["LimitNOFILE"]) >= 2 * 20000
    assert service["Restart"] == "on-failure" and "StartLimitBurst" in unit()["Unit"]


def test_the_nginx_site_forwards_the_websocket_and_the_clients_address():
    site = (REPO / "docs" / "nginx" / "crossbar-jwt.conf").read_text()
    for directive in ("proxy_set_header Upgrade $http_upgrade;", "proxy_http_version 1.1;",
                      "proxy_set_header X-Forwarded-For $remote_addr;", "ssl_protocols"):  # fmt: skip
        assert directive in site
    assert "$proxy_add_x_forwarded_for" not in site  # it keeps the client's own entries


def test_make_run_profile_production_starts_the_production_config():
    import subprocess

    done = subprocess.run(["make", "-n", "run", "PROFILE=production"], cwd=REPO, capture_output=True, text=True)
    command = [line for line in done.stdout.splitlines() if "crossbar start" in line]
    assert command and "--config config-production.json" in command[-1] and "--loglevel warn" in command[-1]


def test_make_run_starts_crossbar_with_the_soft_open_file_limit_raised_to_the_hard_one():
    """The recipe's own shell code, run with a low soft limit and `ulimit -Sn` where Crossbar would
    start: Crossbar inherits the hard limit (one descriptor per session; at 1,024 a router held
    1,010 sessions and dropped the next connections without a log line)."""
    import resource
    import subprocess

    done = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True)
    lines = done.stdout.replace("\\\n", " ").splitlines()
    (recipe,) = [line for line in lines if "crossbar start" in line]
    shell = recipe[: recipe.index(".venv/bin/crossbar start")] + "ulimit -Sn"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    low = min(256, hard)
    ran = subprocess.run(["bash", "-c", f"ulimit -Sn {low}; {shell}"], capture_output=True, text=True, check=True)
    assert ran.stdout.split()[-1] == str(hard)
