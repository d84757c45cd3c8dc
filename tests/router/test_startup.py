"""Start-up behaviour of the node: a generated demo secret, the ready line, and configurations it
refuses — each problem one line at the top of the output, naming the file, the place and the fix,
with no traceback."""

import copy
import json
import os
import stat
import urllib.error
import urllib.request

import pytest
import pytest_twisted

from tests.support.router import RouterProcess
from tests.support.tokens import mint
from tests.support.wamp import connect


@pytest.fixture
def node_without_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    node = RouterProcess(tmp_path, loglevel="warn")  # as make run: the path must show at warn
    node.env = env
    yield node
    node.stop()


@pytest_twisted.ensureDeferred
async def test_first_start_generates_a_private_secret_and_later_starts_reuse_it(node_without_secret):
    node = node_without_secret.start()
    secret_file = node.cbdir / "jwt-secret.key"
    secret = secret_file.read_text()  # exactly the secret: an application may read the file verbatim
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret) >= 32 and secret == secret.strip()
    assert str(secret_file) in node.log() and secret not in node.log()
    assert "python -m authenticator secret" in node.log()

    client = await connect(node.url, mint("alice", ["user"], secret=secret))
    client.leave()

    node.restart()
    assert secret_file.read_text() == secret
    client = await connect(node.url, mint("alice", ["user"], secret=secret))
    assert client.details.authid == "alice"
    client.leave()


def test_every_start_says_at_warn_where_clients_connect_and_where_the_keys_come_from(tmp_path):
    node = RouterProcess(tmp_path, env={"JWT_SECRET": "s" * 40}, loglevel="warn").start()
    try:
        line = node.wait_for_log("authenticator: ready:")
        assert line.endswith(
            f"clients connect to {node.url}, realm realm1; keys: HS256 from environment variable JWT_SECRET"
        )
    finally:
        node.stop()


def test_a_node_config_of_release_0_1_starts_works_and_names_each_old_path(tmp_path):
    """0.1's dotted paths (authenticator.component..., authenticator.http_publish..., ...) resolve to
    the same modules for one release: a login and POST /publish work (the resource finds the
    component's service: one module, one registry), and the start names each old path at warn."""
    from authenticator.contract import DEPRECATED_PATHS

    old_of = {new: old for old, new in DEPRECATED_PATHS.items()}

    def to_0_1(config):
        router = config["workers"][0]
        for holder in (*router["components"], *router["transports"][0]["paths"].values()):
            if holder.get("classname") in old_of:
                holder["classname"] = old_of[holder["classname"]]
            elif holder.get("type") == "wsgi" and f"{holder['module']}.{holder['object']}" in old_of:
                holder["module"] = old_of[f"{holder['module']}.{holder['object']}"].rpartition(".")[0]

    node = RouterProcess(tmp_path, env={"JWT_SECRET": "s" * 40}, edit_config=to_0_1, loglevel="warn").start()
    try:
        node.wait_for_log("authenticator: ready:")
        named = {old for old in DEPRECATED_PATHS if f"{old} moved to {DEPRECATED_PATHS[old]}" in node.log()}
        assert named == {
            "authenticator.component.AuthenticatorComponent",
            "authenticator.http_publish.publish_resource",
            "authenticator.metrics.app",
            "authenticator.issuer.app",
        }, node.log()[-3000:]
        request = urllib.request.Request(
            f"http://127.0.0.1:{node.port}/publish", method="POST",
            data=json.dumps({"topic": "app.user.bob.notifications", "args": ["hi"]}).encode(),
            headers={"Authorization": f"Bearer {mint('billing', ['backend'], secret='s' * 40)}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and "id" in json.load(response)
    finally:
        node.stop()


def test_a_node_with_only_a_yaml_config_serves_its_demo_login_and_names_the_file(tmp_path):
    """Crossbar takes config.yaml when there is no --config; the authenticator and the demo issuer
    read the same file (the issuer read config.json only, and the node died at start)."""
    import yaml

    node = RouterProcess(tmp_path, env={"JWT_SECRET": "s" * 40}, loglevel="warn")
    config = json.loads((node.cbdir / "config.json").read_text())
    (node.cbdir / "config.yaml").write_text(yaml.safe_dump(config))
    (node.cbdir / "config.json").unlink()
    node.start()
    try:
        assert f"{node.cbdir / 'config.yaml'}: clients connect to" in node.wait_for_log("authenticator: ready:")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{node.port}/auth/token", timeout=10)
        assert caught.value.code == 401, caught.value.read()  # the issuer answers: nobody is logged in
    finally:
        node.stop()


def refused_start(tmp_path, edit_config) -> list[str]:
    """The lines of a start that the configuration stops: the node exits, nothing listens."""
    node = RouterProcess(tmp_path, env={"JWT_SECRET": "s" * 40}, edit_config=edit_config, loglevel="warn")
    try:
        with pytest.raises(RuntimeError) as caught:
            node.start()
    finally:
        node.stop()  # a node that started after all must not outlive the test
    assert node.process.returncode != 0
    assert "Traceback" not in caught.value.args[0], caught.value.args[0]
    return [line for line in node.log().splitlines() if "CONFIGURATION ERROR:" in line]


def realm_roles(config):
    return config["workers"][0]["realms"][0]["roles"]


def extra(config):
    return config["workers"][0]["components"][0]["extra"]


def test_a_bad_policy_stops_the_start_with_one_line_naming_the_rule(tmp_path):
    def glob_match(config):
        next(r for r in extra(config)["policy"]["roles"] if r["name"] == "user")["rules"][0]["match"] = "glob"

    (line,) = refused_start(tmp_path, glob_match)
    assert "config.json: the authenticator component's extra: " in line
    assert "role 'user' rule #1: 'match' must be one of exact, prefix, wildcard" in line


def test_a_misspelled_authorizer_stops_the_start_naming_its_place_and_the_fix(tmp_path):
    def misspell(config):
        next(r for r in realm_roles(config) if r["name"] == "user")["authorizer"] = "authenticator.authorise"

    (line,) = refused_start(tmp_path, misspell)
    index = next(i for i, r in enumerate(RouterProcess.shipped_config()["workers"][0]["realms"][0]["roles"])
                 if r["name"] == "user")  # fmt: skip
    assert f"config.json: workers[0].realms[0].roles[{index}].authorizer: 'authenticator.authorise' is not" in line
    assert "set it to 'authenticator.authorize'" in line


def test_a_policy_role_the_realm_does_not_define_stops_the_start(tmp_path):
    def drop_admin(config):
        config["workers"][0]["realms"][0]["roles"] = [r for r in realm_roles(config) if r["name"] != "admin"]

    (line,) = refused_start(tmp_path, drop_admin)
    assert "the policy role 'admin' is not a role of realm 'realm1'" in line
    assert '{"name": "admin", "authorizer": "authenticator.authorize"}' in line


def test_a_misspelled_key_stops_the_start_and_says_what_was_meant(tmp_path):
    def misspell(config):
        extra(config)["claims"]["leeway_second"] = 5

    (line,) = refused_start(tmp_path, misspell)
    assert "'claims' has unknown key 'leeway_second' (did you mean 'leeway_seconds'?)" in line


def test_a_short_secret_stops_the_start_and_says_how_to_make_a_good_one(tmp_path):
    node = RouterProcess(tmp_path, env={"JWT_SECRET": "changeme"})
    with pytest.raises(RuntimeError) as caught:
        node.start()
    message = str(caught.value)
    assert "8 bytes; at least 32 are needed" in message and "secrets.token_urlsafe" in message
    assert "changeme" not in message


def test_with_several_realms_a_bad_configuration_stops_the_start_naming_the_realm(tmp_path):
    """Each realm's component is checked at start as the single one is; its lines name its realm."""
    from tests.router.test_realms import A, B

    def two_realms(config):
        router = config["workers"][0]
        realm, component = router["realms"][0], router["components"][0]
        router["realms"] = [{**copy.deepcopy(realm), "name": name} for name in (A, B)]
        router["components"] = [{**copy.deepcopy(component), "realm": name} for name in (A, B)]
        router["components"][0]["extra"]["claims"]["realm_claim"] = None

    (line,) = refused_start(tmp_path, two_realms)
    assert (f"config.json: the authenticator component of realm '{A}': its extra: 'claims.realm_claim' cannot be "
            f"null: this node serves the realms {A}, {B}") in line  # fmt: skip
