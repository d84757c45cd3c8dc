"""The cross-checks between the policy and the node config: each mistake that used to start
silently is named with its place in the JSON and the fix."""

import copy
import json
from pathlib import Path

import pytest

from authenticator.config.node_checks import check_node
from authenticator.config.node_config import component_extra, controller_config_file
from authenticator.config.settings import load_settings
from tests.support.router import REPO

SHIPPED = json.loads((REPO / ".crossbar" / "config.json").read_text())
SCALED = json.loads((REPO / ".crossbar" / "config-proxies.json").read_text())
POLICY_ROLES = tuple(role["name"] for role in component_extra(REPO / ".crossbar" / "config.json")["policy"]["roles"])


def role_index(config, name):
    return next(i for i, r in enumerate(config["workers"][0]["realms"][0]["roles"]) if r["name"] == name)


def test_the_policy_roles_are_read_from_the_shipped_config(tmp_path):
    extra = component_extra(REPO / ".crossbar" / "config.json")
    assert tuple(load_settings(extra, tmp_path, generate_secret=None).policy.roles) == POLICY_ROLES


@pytest.mark.parametrize("config", [SHIPPED, SCALED], ids=["config.json", "config-proxies.json"])
def test_the_shipped_configs_have_no_problem(config):
    assert check_node(config, POLICY_ROLES) == []


def edited(change):
    config = copy.deepcopy(SHIPPED)
    change(config)
    return config


def realm(config):
    return config["workers"][0]["realms"][0]


def ws_auth(config):
    return config["workers"][0]["transports"][0]["paths"]["ws"]["auth"]


USER = role_index(SHIPPED, "user")


@pytest.mark.parametrize(
    ("change", "roles", "path", "says"),
    [
        (lambda c: None, (*POLICY_ROLES, "auditor"), "workers[0].realms[0].roles",
         "the policy role 'auditor' is not a role of realm 'realm1'"),
        (lambda c: realm(c)["roles"][USER].update(authorizer="authenticator.authorise"), POLICY_ROLES,
         f"workers[0].realms[0].roles[{USER}].authorizer", "'authenticator.authorise' is not"),
        (lambda c: realm(c)["roles"][USER].pop("authorizer"), POLICY_ROLES,
         f"workers[0].realms[0].roles[{USER}]", "is in the policy but not authorized by it"),
        (lambda c: ws_auth(c)["ticket"].update(authenticator="authenticator.auth"), POLICY_ROLES,
         "workers[0].transports[0].paths.ws.auth.ticket.authenticator", "every ticket login would fail"),
        (lambda c: ws_auth(c)["anonymous"].update(authenticator="x"), POLICY_ROLES,
         "workers[0].transports[0].paths.ws.auth.anonymous.authenticator", "set it to 'authenticator.authenticate_h"),
        (lambda c: c["workers"][0]["components"][0].update(role="authenticatr"), POLICY_ROLES,
         "workers[0].components[0].role", "names role 'authenticatr'"),
        (lambda c: c["workers"][0]["components"][0].update(realm="realm2"), POLICY_ROLES,
         "workers[0].components[0].realm", "the worker defines 'realm1'"),
    ],
    ids=["policy-role-not-in-realm", "misspelled-authorizer", "static-policy-role", "ticket-authenticator",
         "anonymous-authenticator", "component-role", "component-realm"],
)  # fmt: skip
def test_each_mistake_is_one_problem_with_its_place(change, roles, path, says):
    (problem,) = check_node(edited(change), roles)
    assert problem.path == path and says in problem.message, problem


def test_a_misspelling_is_called_one_and_the_fix_is_given():
    (problem,) = check_node(edited(lambda c: realm(c)["roles"][USER].update(authorizer="authenticator.authorise")),
                            POLICY_ROLES)  # fmt: skip
    assert "(a misspelling?)" in problem.message and problem.message.endswith("set it to 'authenticator.authorize'")


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["crossbar", "start", "--cbdir", ".crossbar", "--config", "config-proxies.json"], "config-proxies.json"),
        (["crossbar", "start", "--config=prod.json"], "prod.json"),
        (["crossbar", "start", "--cbdir", ".crossbar"], "config.json"),
    ],
)
def test_the_node_config_is_the_one_crossbar_start_was_given(tmp_path, cmdline, expected):
    (tmp_path / "config.json").write_text("{}")
    assert controller_config_file(tmp_path, cmdline) == tmp_path / expected


def test_without_a_config_argument_or_file_there_is_none(tmp_path):
    assert controller_config_file(Path(tmp_path), ["crossbar", "start"]) is None


def test_a_websocket_transport_of_its_own_is_checked_too():
    def plain_websocket(config):
        config["workers"][0]["transports"].append({
            "type": "websocket", "endpoint": {"type": "tcp", "port": 9000},
            "auth": {"ticket": {"type": "dynamic", "authenticator": "authenticator.authentcate"}},
        })  # fmt: skip

    (problem,) = check_node(edited(plain_websocket), POLICY_ROLES)
    assert problem.path == "workers[0].transports[1].auth.ticket.authenticator"


def test_a_proxy_without_a_route_for_a_policy_role_is_a_problem():
    config = copy.deepcopy(SCALED)
    proxy = next(i for i, w in enumerate(config["workers"]) if w.get("type") == "proxy")
    del config["workers"][proxy]["routes"]["realm1"]["admin"]
    (problem,) = check_node(config, POLICY_ROLES)
    assert (
        problem.path == f"workers[{proxy}].routes.realm1" and "no route for the policy role 'admin'" in problem.message
    )


@pytest.mark.parametrize("arg", [["--conf", "prod.json"], ["--confi=prod.json"]])
def test_an_abbreviated_config_option_is_read_as_crossbar_reads_it(tmp_path, arg):
    assert controller_config_file(tmp_path, ["crossbar", "start", *arg]) == tmp_path / "prod.json"
