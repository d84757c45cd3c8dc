"""Several nodes: N node configs derived from one, joined by Crossbar router links in a full mesh.

Crossbar forwards an event over one link only (an event a link relayed is never relayed again),
so every node links to every other. Each link pulls the other node's events in for this node's
subscribers (``forward_local_events``; ``forward_remote_events`` off: the other node's own link
does that direction). A link authenticates with its node's key (WAMP-cryptosign, Crossbar's own
node key file ``key.pub``), which the other nodes list under their link transport's
``authorized_keys``. Every node's component shares one Redis (``store.redis_url``): single use,
revocation, ``POST /publish`` idempotency keys, presence and recovery history all live there.

What Crossbar cannot do across links in this setup is refused here, one line each
(:class:`ClusterRefused`): procedures (the policy granting ``register``), retained events.
Publisher disclosure needs no change: an event whose publisher the policy does not disclose
crosses the links undisclosed (authenticator/patches/rlink_events.py).

    python -m authenticator cluster-config --nodes 3 --redis-url redis://127.0.0.1:6379/0 --out cluster
    crossbar start --cbdir cluster/node-1/.crossbar
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from authenticator.config.node_config import authenticator_realms, websocket_url, with_current_paths
from authenticator.contract import COMPONENT_CLASSES

# The realm role of the other nodes' link sessions. They only subscribe: the events of a topic
# are pulled by the node whose clients subscribed to it.
LINK_ROLE = "rlink"
LINK_PORT = 7000
PORT_STEP = 10  # node i's ports: each port of the source config + (i - 1) * PORT_STEP


class ClusterRefused(ValueError):
    """The source config asks for something router links cannot carry; the message says what to do."""


@dataclass(frozen=True)
class NodeAddress:
    name: str  # node-1, node-2, ...: the node directory and the link ids
    host: str  # where the other nodes reach its link port
    link_port: int
    port_offset: int  # added to every TCP port of the source config


def node_addresses(nodes: int, hosts: Sequence[str] = ("127.0.0.1",), link_port: int = LINK_PORT,
                   port_step: int = PORT_STEP, first_offset: int = 0) -> list[NodeAddress]:  # fmt: skip
    """Where each node listens: one host for all, or one host per node; node i's ports are the source
    config's moved by first_offset + (i - 1) * port_step, its link port link_port + (i - 1) * port_step."""
    if nodes < 2:
        raise ValueError("a cluster has at least 2 nodes")
    if len(hosts) not in (1, nodes):
        raise ValueError(f"give one --host for all nodes or one per node ({nodes}), not {len(hosts)}")
    return [
        NodeAddress(
            f"node-{i + 1}", hosts[i if len(hosts) > 1 else 0], link_port + i * port_step, first_offset + i * port_step
        )
        for i in range(nodes)
    ]


PLAINTEXT_LINKS_OPTION = "--plaintext-links-on-a-private-network"


def exposed_link_hosts(hosts: Sequence[str]) -> list[str]:
    """The hosts that are not loopback (127.0.0.0/8, ::1, localhost): the router links are plain TCP
    (WAMP-cryptosign authenticates the nodes but encrypts nothing), so on those the events, per-user
    ones too, cross the network in clear, and a path attacker could inject events into a link (the
    receiving node publishes what a link relays)."""
    exposed = []
    for host in hosts:
        try:
            loopback = host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:  # a host name: what it resolves to is not known here
            loopback = False
        if not loopback:
            exposed.append(host)
    return exposed


def link_exposure_refusal(hosts: Sequence[str]) -> str | None:
    """One line, what and what to do, when a link would leave this machine; None when all are loopback."""
    exposed = exposed_link_hosts(hosts)
    if not exposed:
        return None
    return (
        f"--host {', '.join(exposed)}: router links are plain TCP (the node keys authenticate the nodes but "
        "nothing is encrypted: events, per-user ones too, would cross the network in clear and could be "
        "injected on the path); join the nodes by a private network or VPN (WireGuard) and pass "
        f"{PLAINTEXT_LINKS_OPTION} to accept it"
    )


def refusals(config: Mapping) -> list[str]:
    """What the source config asks for that router links cannot carry: one line each, what and what to do."""
    lines = []
    realms = authenticator_realms(config)
    if len(realms) > 1:
        lines.append(
            f"the node serves the realms {', '.join(realms)}: cluster-config links one realm (its router links, "
            "link role and Redis store are written for it); derive a cluster per realm from a config with that "
            "realm, or link the realms by hand (docs/scaling.md#several-nodes)"
        )
    for role in _component_extra(config).get("policy", {}).get("roles", []):
        for rule in role.get("rules", []):
            where = f"policy role '{role.get('name')}' rule '{rule.get('uri')}'"
            if rule.get("allow", {}).get("register"):
                lines.append(
                    f"{where} allows register: calls do not cross router links here (Crossbar 26.10 relays a call "
                    "with the caller's role as its authid: the callee would see authid 'user'); run the callee on "
                    "every node, or remove the rule"
                )
            if rule.get("retain"):
                lines.append(
                    f"{where} retains events: a retained event stays on the node it was published on (links "
                    "carry live events only); remove 'retain', or read the last event from the topic's history"
                )
    return lines


def cluster_configs(config: Mapping, addresses: Sequence[NodeAddress], public_keys: Sequence[str], redis_url: str,
                    relocate: Callable[[NodeAddress, str], str] = lambda _node, path: path) -> list[dict]:  # fmt: skip
    """One node config per address, from `config` (a node config with the authenticator component:
    config.json, config-proxies.json or config-production.json). `public_keys[i]`: node i's
    ed25519 public key (hex), as in its .crossbar/key.pub. `relocate(node, path)`: a relative path of
    the source node directory (the secret, key and users files, pythonpath, static directories) as
    that node's directory reaches it, so every node reads the same key files."""
    problems = refusals(config)
    if problems:
        raise ClusterRefused("\n".join(problems))
    if len(public_keys) != len(addresses):
        raise ValueError("one public key per node")
    return [_node(config, addresses, public_keys, i, redis_url, relocate) for i in range(len(addresses))]


def _node(source: Mapping, addresses: Sequence[NodeAddress], keys: Sequence[str], me: int, redis_url: str,
          relocate: Callable[[str], str]) -> dict:  # fmt: skip
    here = addresses[me]
    config = _shifted(with_current_paths(source), here.port_offset)
    _relocated(config, lambda path: relocate(here, path))
    router = next(w for w in config["workers"] if w.get("type") == "router")
    realm = router["realms"][0]
    # "cache": False: Crossbar would cache the static answer once per URI a link subscribes to, unbounded.
    realm["roles"].append({
        "name": LINK_ROLE,
        "permissions": [{"uri": "", "match": "prefix",
                         "allow": {"call": False, "register": False, "publish": False, "subscribe": True},
                         "disclose": {"caller": False, "publisher": False}, "cache": False}],
    })  # fmt: skip
    others = [i for i in range(len(addresses)) if i != me]
    router["transports"].append({
        "type": "rawsocket",
        "endpoint": {"type": "tcp", "interface": here.host, "port": here.link_port},
        "serializers": ["cbor"],
        "auth": {"cryptosign": {"type": "static", "principals": {LINK_ROLE: {
            "realm": realm["name"], "role": LINK_ROLE, "authorized_keys": [keys[i] for i in others]}}}},
    })  # fmt: skip
    realm["rlinks"] = [
        {
            "id": f"to-{addresses[i].name}",
            "realm": realm["name"],
            "forward_local_events": True,
            "forward_remote_events": False,
            "forward_local_invocations": False,
            "forward_remote_invocations": False,
            "transport": {
                "type": "rawsocket",
                "serializer": "cbor",
                "url": f"rs://{addresses[i].host}:{addresses[i].link_port}",
                "endpoint": {"type": "tcp", "host": addresses[i].host, "port": addresses[i].link_port},
            },
        }
        for i in others
    ]
    extra = _component_extra(config)
    extra["store"] = {**{k: v for k, v in extra.get("store", {}).items() if k != "sqlite"}, "redis_url": redis_url}
    cookie = extra.get("cookie")
    if isinstance(cookie, dict) and here.port_offset:
        cookie["allowed_origins"] = [_shift_origin(o, here.port_offset) for o in cookie.get("allowed_origins", [])]
    return config


def _relocated(config: dict, relocate: Callable[[str], str]) -> None:
    for worker in config.get("workers", []):
        options = worker.get("options", {})
        if isinstance(options.get("pythonpath"), list):
            options["pythonpath"] = [relocate(p) for p in options["pythonpath"]]
        for transport in worker.get("transports", []):
            for path in (transport.get("paths") or {}).values():
                if isinstance(path, dict) and path.get("type") == "static" and "directory" in path:
                    path["directory"] = relocate(path["directory"])
    extra = _component_extra(config)
    for key in extra.get("keys", []):
        for name in ("secret_file", "public_key_file", "jwks_file"):
            if isinstance(key, dict) and isinstance(key.get(name), str):
                key[name] = relocate(key[name])
    issuer = extra.get("issuer")
    if isinstance(issuer, dict) and isinstance(issuer.get("users_file"), str):
        issuer["users_file"] = relocate(issuer["users_file"])


def public_port(config: Mapping) -> int:
    """The port of the config's first WebSocket transport (the one clients connect to)."""
    url = websocket_url(config)
    if url is None:
        raise ValueError("the node config has no WebSocket path")
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _component_extra(config: Mapping) -> dict:
    for worker in config.get("workers", []):
        for component in worker.get("components", []) or []:
            if component.get("classname") in COMPONENT_CLASSES:
                return component.setdefault("extra", {}) if isinstance(component, dict) else {}
    raise ValueError("the node config has no authenticator component")


def _shifted(config: dict, offset: int) -> dict:
    """A copy with every TCP port (endpoints, reverseproxy targets, forwarded ports) moved by offset."""
    config = copy.deepcopy(config)

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("port", "forwarded_port") and type(value) is int:
                    node[key] = value + offset
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return config


def _shift_origin(origin: str, offset: int) -> str:
    scheme_host, sep, port = origin.rpartition(":")
    if sep and port.isdigit() and "//" in scheme_host:
        return f"{scheme_host}:{int(port) + offset}"
    return origin
