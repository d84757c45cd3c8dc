"""cluster-config: N node configs in a full mesh of router links (authenticator/config/cluster.py)."""

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from authenticator.config.cluster import (
    LINK_ROLE,
    ClusterRefused,
    cluster_configs,
    exposed_link_hosts,
    node_addresses,
    refusals,
)
from authenticator.ops.cli import main

REPO = Path(__file__).resolve().parents[2]
KEYS = ["aa" * 32, "bb" * 32, "cc" * 32]


def shipped(name: str = "config.json") -> dict:
    return json.loads((REPO / ".crossbar" / name).read_text())


def tcp_ports(config: dict) -> list[int]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "tcp" and isinstance(node.get("port"), int) and "host" not in node:
                found.append(node["port"])  # a listening endpoint (a connecting one names its host)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def router(config: dict) -> dict:
    return next(w for w in config["workers"] if w["type"] == "router")


def test_every_node_links_to_every_other_and_trusts_only_their_node_keys():
    addresses = node_addresses(3)
    nodes = cluster_configs(shipped(), addresses, KEYS, "redis://redis.internal:6379/0")
    for i, node in enumerate(nodes):
        realm = router(node)["realms"][0]
        others = [j for j in range(3) if j != i]
        links = realm["rlinks"]
        assert [link["id"] for link in links] == [f"to-node-{j + 1}" for j in others]
        for link, j in zip(links, others, strict=True):
            assert link["transport"]["endpoint"]["port"] == addresses[j].link_port
            assert (link["forward_local_events"], link["forward_remote_events"]) == (True, False)
            assert not link["forward_local_invocations"] and not link["forward_remote_invocations"]
        (link_transport,) = [t for t in router(node)["transports"] if t["type"] == "rawsocket"]
        principal = link_transport["auth"]["cryptosign"]["principals"][LINK_ROLE]
        assert principal["authorized_keys"] == [KEYS[j] for j in others]
        assert link_transport["endpoint"]["port"] == addresses[i].link_port
        # the other nodes' link sessions may subscribe, nothing else
        (role,) = [r for r in realm["roles"] if r["name"] == LINK_ROLE]
        assert [rule["allow"] for rule in role["permissions"]] == [
            {"call": False, "register": False, "publish": False, "subscribe": True}
        ]
        extra = router(node)["components"][0]["extra"]
        assert extra["store"] == {"redis_url": "redis://redis.internal:6379/0"}
    ports = [port for node in nodes for port in tcp_ports(node)]
    assert len(ports) == len(set(ports)) == 3 * 2, ports  # public + link per node


def test_the_policy_is_not_changed_an_undisclosed_publisher_stays_undisclosed():
    source = shipped()
    node = cluster_configs(source, node_addresses(2), KEYS[:2], "redis://127.0.0.1:6379/0")[0]
    assert router(node)["components"][0]["extra"]["policy"] == router(source)["components"][0]["extra"]["policy"]


@pytest.mark.parametrize("name", ["config-proxies.json", "config-production.json"])
def test_the_proxy_and_production_profiles_get_distinct_ports_on_every_node(name):
    nodes = cluster_configs(shipped(name), node_addresses(3), KEYS, "redis://127.0.0.1:6379/0")
    per_node = [set(tcp_ports(node)) for node in nodes]  # proxies share their node's public port
    assert sum(len(ports) for ports in per_node) == len(set().union(*per_node)), per_node
    for node in nodes:  # a proxy forwards to its own node's internal transport
        own = set(tcp_ports(node))
        for worker in node["workers"]:
            for transport in worker.get("transports", []):
                for path in (transport.get("paths") or {}).values():
                    if path.get("type") == "reverseproxy":
                        assert path["port"] in own, path


def test_every_node_reads_the_same_key_files_from_its_own_directory():
    def relocate(address, name):
        return f"../../../.crossbar/{name}" if not name.startswith("/") else name

    nodes = cluster_configs(shipped(), node_addresses(2), KEYS[:2], "redis://127.0.0.1:6379/0", relocate)
    for node in nodes:
        extra = router(node)["components"][0]["extra"]
        assert extra["keys"][0]["secret_file"] == "../../../.crossbar/jwt-secret.key"
        assert extra["issuer"]["users_file"] == "../../../.crossbar/users.json"
        assert router(node)["options"]["pythonpath"] == ["../../../.crossbar/.."]


def test_what_links_cannot_carry_is_refused_one_line_each_with_what_to_do():
    config = shipped()
    rules = router(config)["components"][0]["extra"]["policy"]["roles"][1]["rules"]
    rules.append({"uri": "app.rpc.", "match": "prefix", "allow": {"register": True}})
    rules.append({"uri": "app.status", "allow": {"publish": True}, "retain": True})
    lines = refusals(config)
    assert len(lines) == 2
    assert "'app.rpc.' allows register: calls do not cross router links here" in lines[0]
    assert "run the callee on every node, or remove the rule" in lines[0]
    assert "'app.status' retains events" in lines[1] and "remove 'retain'" in lines[1]
    with pytest.raises(ClusterRefused):
        cluster_configs(config, node_addresses(2), KEYS[:2], "redis://127.0.0.1:6379/0")
    assert refusals(shipped()) == []


def test_one_host_for_all_or_one_per_node():
    assert [a.host for a in node_addresses(3, ("10.0.0.1", "10.0.0.2", "10.0.0.3"))] == [
        "10.0.0.1", "10.0.0.2", "10.0.0.3"]  # fmt: skip
    with pytest.raises(ValueError, match="one --host for all nodes or one per node"):
        node_addresses(3, ("10.0.0.1", "10.0.0.2"))
    with pytest.raises(ValueError, match="at least 2"):
        node_addresses(1)


def test_the_command_writes_a_node_directory_per_node_with_crossbars_key_files(tmp_path):
    result = CliRunner().invoke(main, [
        "cluster-config", "--cbdir", str(REPO / ".crossbar"), "--nodes", "3", "--redis-url",
        "redis://127.0.0.1:6379/0", "--out", str(tmp_path / "cluster")])  # fmt: skip
    assert result.exit_code == 0, result.output
    keys = []
    for i in (1, 2, 3):
        cbdir = tmp_path / "cluster" / f"node-{i}" / ".crossbar"
        assert stat.S_IMODE(os.stat(cbdir / "key.priv").st_mode) == 0o600
        keys.append(next(line.split(":", 1)[1].strip() for line in (cbdir / "key.pub").read_text().splitlines()
                         if line.startswith("public-key-ed25519:")))  # fmt: skip
        config = json.loads((cbdir / "config.json").read_text())
        extra = router(config)["components"][0]["extra"]
        assert (cbdir / extra["keys"][0]["secret_file"]).resolve() == (REPO / ".crossbar" / "jwt-secret.key")
        assert (cbdir / router(config)["options"]["pythonpath"][0]).resolve() == REPO
        assert f"crossbar start --cbdir {cbdir}" in result.output
    assert len(set(keys)) == 3
    config = json.loads((tmp_path / "cluster" / "node-1" / ".crossbar" / "config.json").read_text())
    assert [t for t in router(config)["transports"] if t["type"] == "rawsocket"][0]["auth"]["cryptosign"][
        "principals"][LINK_ROLE]["authorized_keys"] == keys[1:]  # fmt: skip


def test_the_command_refuses_a_policy_links_cannot_carry_and_writes_nothing(tmp_path):
    config = shipped()
    router(config)["components"][0]["extra"]["policy"]["roles"][1]["rules"].append(
        {"uri": "app.rpc.", "match": "prefix", "allow": {"register": True}})  # fmt: skip
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, [
        "cluster-config", "--cbdir", str(tmp_path / "src"), "--redis-url", "redis://127.0.0.1:6379/0",
        "--out", str(tmp_path / "cluster")])  # fmt: skip
    assert result.exit_code == 1
    assert "allows register: calls do not cross router links here" in result.output
    assert not list((tmp_path / "cluster").rglob("config.json"))


def test_a_redis_password_makes_every_node_config_readable_by_its_owner_only(tmp_path):
    result = CliRunner().invoke(main, [
        "cluster-config", "--cbdir", str(REPO / ".crossbar"), "--nodes", "2", "--redis-url",
        "redis://:s3cret@127.0.0.1:6379/0", "--out", str(tmp_path / "cluster")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    for i in (1, 2):
        config = tmp_path / "cluster" / f"node-{i}" / ".crossbar" / "config.json"
        assert stat.S_IMODE(os.stat(config).st_mode) == 0o600


def test_a_query_string_password_makes_every_node_config_owner_only_from_its_first_byte(tmp_path, monkeypatch):
    """`?password=` is how a unix:// URL carries the Redis password: a secret like the userinfo one.
    Every byte of a config goes to a file that is 0600 already (created so, not chmodded after),
    also where a 0644 config from an earlier run is replaced."""
    old = tmp_path / "cluster" / "node-1" / ".crossbar" / "config.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    old.chmod(0o644)
    modes_at_write = {}
    real_write = os.write

    def write(fd, data):
        modes_at_write.setdefault(os.readlink(f"/proc/self/fd/{fd}"), stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    result = CliRunner().invoke(main, [
        "cluster-config", "--cbdir", str(REPO / ".crossbar"), "--nodes", "2", "--redis-url",
        "unix:///run/redis/redis.sock?db=0&password=s3cret", "--out", str(tmp_path / "cluster")])  # fmt: skip
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    written = [mode for path, mode in modes_at_write.items() if "config.json" in path]
    assert written == [0o600, 0o600], modes_at_write
    for i in (1, 2):
        config = tmp_path / "cluster" / f"node-{i}" / ".crossbar" / "config.json"
        assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
        assert json.loads(config.read_text())["workers"]
    assert not list((tmp_path / "cluster").rglob("*.tmp"))


def test_the_link_role_is_not_cached_by_crossbar():
    """Crossbar caches a static permission with "cache": true once per URI: a link subscribes to
    every topic its node's clients subscribe to, so the cache would grow without bound."""
    for node in cluster_configs(shipped(), node_addresses(2), KEYS[:2], "redis://127.0.0.1:6379/0"):
        (role,) = [r for r in router(node)["realms"][0]["roles"] if r["name"] == LINK_ROLE]
        assert [rule["cache"] for rule in role["permissions"]] == [False]


def test_hosts_off_loopback_are_named_and_loopback_ones_are_not():
    assert exposed_link_hosts(["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"]) == []
    everywhere = ["0.0.0.0", "::"]  # noqa: S104 (listening on every interface is off loopback too)
    assert exposed_link_hosts(["10.0.0.1", "127.0.0.1", "node-2.internal", *everywhere]) == [
        "10.0.0.1", "node-2.internal", *everywhere]  # fmt: skip


def test_a_host_off_loopback_is_refused_in_one_line_unless_plaintext_links_are_accepted(tmp_path):
    """Router links are plain TCP: cryptosign authenticates the nodes, nothing is encrypted, and the
    receiving node publishes what a link relays. Off loopback the operator has to say that a private
    network (a VPN such as WireGuard) joins the nodes; nothing is written before."""
    args = ["cluster-config", "--cbdir", str(REPO / ".crossbar"), "--nodes", "2", "--redis-url",
            "redis://10.0.0.9:6379/0", "--host", "10.0.0.1", "--host", "127.0.0.1",
            "--out", str(tmp_path / "c")]  # fmt: skip
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    (line,) = refused.output.strip().splitlines()
    assert line.startswith("--host 10.0.0.1: router links are plain TCP")
    assert "private network or VPN (WireGuard)" in line and "--plaintext-links-on-a-private-network" in line
    assert not (tmp_path / "c").exists()
    accepted = CliRunner().invoke(main, [*args, "--plaintext-links-on-a-private-network"])
    assert accepted.exit_code == 0, accepted.output
    node_1 = json.loads((tmp_path / "c" / "node-1" / ".crossbar" / "config.json").read_text())
    (link,) = router(node_1)["realms"][0]["rlinks"]
    assert link["transport"]["endpoint"]["host"] == "127.0.0.1"
