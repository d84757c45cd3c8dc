"""Cross-checks between the authenticator's policy and the Crossbar node config around it.

Crossbar checks the node config's shape; the authenticator checks its own `extra`. Neither sees
the mistakes between them, which start silently and fail at the first client: a policy role the
realm does not define (clients get `wamp.error.no_such_role`), a realm role whose authorizer is
misspelled (`wamp.error.authorization_failed` and a traceback), a transport whose dynamic
authenticator names a procedure nobody registers. Each problem names the place in the JSON and
the fix. Used at start (the component) and by `python -m authenticator check`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# The procedures the component registers.
from authenticator.config.node_config import find_component, find_components
from authenticator.contract import (
    AUTHENTICATE,
    AUTHENTICATE_HEADERS,
    AUTHORIZE,
    COMPONENT_CLASS,
    PRESENCE_TOPIC_PREFIX,
)
from authenticator.core.settings import DEFAULT_HELLO_TIMEOUT_SECONDS

# What the component's static role must allow besides registering its procedures: presence tracks
# subscriptions from Crossbar's meta events and publishes join/leave events (docs/recovery.md#presence).
COMPONENT_NEEDS = (
    ("wamp.subscription.on_create", "subscribe", "wamp.subscription.on_"),
    (PRESENCE_TOPIC_PREFIX + "app.chat", "publish", PRESENCE_TOPIC_PREFIX),
)

# The authenticator each dynamic auth method of a websocket path must name.
AUTHENTICATORS = {"ticket": AUTHENTICATE, "anonymous": AUTHENTICATE_HEADERS}


@dataclass(frozen=True)
class Problem:
    path: str  # where in the node config, e.g. workers[0].realms[0].roles[2].authorizer
    message: str  # what is wrong, and the fix

    def line(self, config_file: Path | str) -> str:
        return f"{config_file}: {self.path}: {self.message}"


def check_node(config: Mapping, policy_roles: Iterable[str], realm: str | None = None) -> list[Problem]:
    """Every problem between the node config and the policy roles of the authenticator component
    of `realm` (None: the first), and between the realms' components."""
    problems: list[Problem] = list(_realms_problems(config))
    found = find_component(config, realm)
    if found is None:
        return [Problem("workers", f"no router worker has a component with classname {COMPONENT_CLASS}")]
    w, c, worker, component = found
    realm_name, component_role = component.get("realm"), component.get("role")
    realms = worker.get("realms", [])
    r = next((i for i, realm in enumerate(realms) if realm.get("name") == realm_name), None)
    if r is None:
        defined = ", ".join(repr(realm.get("name")) for realm in realms) or "none"
        return [
            Problem(f"workers[{w}].components[{c}].realm", f"names realm {realm_name!r}; the worker defines {defined}")
        ]
    roles_path = f"workers[{w}].realms[{r}].roles"
    roles = {role.get("name"): (i, role) for i, role in enumerate(realms[r].get("roles", []))}
    if component_role not in roles:
        problems.append(Problem(f"workers[{w}].components[{c}].role", (
            f"names role {component_role!r}, which realm {realm_name!r} does not define; add to {roles_path} a "
            "role with static permissions for the authenticator's procedures (as the shipped config.json has)"
        )))  # fmt: skip
    elif roles[component_role][1].get("authorizer") is None:
        i, role = roles[component_role]
        for uri, action, rule_uri in COMPONENT_NEEDS:
            if not _static_allows(role.get("permissions") or [], uri, action):
                problems.append(Problem(f"{roles_path}[{i}].permissions", (
                    f"role {component_role!r} may not {action} {uri}, which presence needs; add "
                    f'{{"uri": "{rule_uri}", "match": "prefix", "allow": {{"{action}": true}}}} '
                    "(as the shipped config.json has)"
                )))  # fmt: skip
    for name in policy_roles:
        if name not in roles:
            problems.append(Problem(roles_path, (
                f"the policy role {name!r} is not a role of realm {realm_name!r}, so clients with it are refused "
                f'wamp.error.no_such_role; add {{"name": "{name}", "authorizer": "{AUTHORIZE}"}}'
            )))  # fmt: skip
        elif roles[name][1].get("authorizer") is None:
            problems.append(Problem(f"{roles_path}[{roles[name][0]}]", (
                f"role {name!r} is in the policy but not authorized by it; give it "
                f'"authorizer": "{AUTHORIZE}" instead of static permissions'
            )))  # fmt: skip
    for name, (i, role) in roles.items():
        authorizer = role.get("authorizer")
        if authorizer is not None and authorizer != AUTHORIZE:
            problems.append(Problem(f"{roles_path}[{i}].authorizer", (
                f"{_misspelled(authorizer, AUTHORIZE)}: no procedure of that name is registered, so every request of "
                f"role {name!r} fails with wamp.error.authorization_failed; set it to {AUTHORIZE!r}"
            )))  # fmt: skip
    problems.extend(_transport_problems(config))
    problems.extend(_route_problems(config, realm_name, policy_roles))
    return problems


def _realms_problems(config: Mapping) -> Iterable[Problem]:
    """Several realms (tenants): one component each, each with its own token store, every realm
    authenticated by its own component, and the worker's own settings alike in all of them."""
    components = find_components(config)
    yield from _component_problems(components)
    yield from _worker_wide_problems(components)
    yield from _realms_without_a_component(config, components)
    yield from _authenticator_realm_problems(config, components)


def _component_problems(components: list) -> Iterable[Problem]:
    """A realm with a second component; two realms on one SQLite file."""
    seen: dict[object, str] = {}
    stores: dict[str, str] = {}
    for w, c, _worker, component in components:
        where, realm = f"workers[{w}].components[{c}]", component.get("realm")
        if realm in seen:
            yield Problem(f"{where}.realm", f"realm {realm!r} has a second authenticator component (the first is "
                                            f"{seen[realm]}); one component serves one realm: merge them")  # fmt: skip
            continue
        seen[realm] = where
        store = (component.get("extra") or {}).get("store") or {}
        location = _store_location(store) if isinstance(store, Mapping) else None
        if location is None or len(components) < 2:
            continue
        if location in stores:
            yield Problem(f"{where}.extra.store", (
                f"realm {realm!r} shares its token store ({location}) with realm {stores[location]!r}: a revocation "
                "or a used token of one would count in the other; give each realm its own SQLite file (or use Redis, "
                "which realms may share: their keys are kept apart)"
            ))  # fmt: skip
        stores[location] = realm


def _worker_wide_problems(components: list) -> Iterable[Problem]:
    """Settings of the router worker, not of a realm: every realm's component must say the same."""
    for key, read in WORKER_WIDE.items():
        values: dict[int, list] = {}
        for w, c, _worker, component in components:
            extra = component.get("extra") if isinstance(component.get("extra"), Mapping) else {}
            values.setdefault(w, []).append((c, component.get("realm"), read(extra)))
        for w, found in values.items():
            if len({json.dumps(v, sort_keys=True) for _c, _realm, v in found}) > 1:
                realms = ", ".join(repr(r) for _c, r, _v in found)
                yield Problem(f"workers[{w}].components[{found[-1][0]}].extra", (
                    f"{key} differs between the realms of this router worker ({realms}); it applies to the whole "
                    "worker: give every realm's component the same value"
                ))  # fmt: skip


def _realms_without_a_component(config: Mapping, components: list) -> Iterable[Problem]:
    """A realm whose roles name our authorizer, but no component of ours serves it."""
    if not components:
        return
    served = {component.get("realm") for _w, _c, _worker, component in components}
    for w, worker in enumerate(config.get("workers", [])):
        for r, realm in enumerate(worker.get("realms", []) or []):
            if not isinstance(realm, Mapping) or realm.get("name") in served:
                continue
            authorized = [role.get("name") for role in realm.get("roles", []) or []
                          if isinstance(role, Mapping) and role.get("authorizer") == AUTHORIZE]  # fmt: skip
            if authorized:
                roles = ", ".join(map(str, authorized))
                yield Problem(f"workers[{w}].realms[{r}]", (
                    f"realm {realm.get('name')!r} has roles authorized by {AUTHORIZE!r} ({roles}) but no authenticator "
                    f"component: add one with \"realm\": {json.dumps(realm.get('name'))} (each realm's own keys and "
                    "policy; docs/configuration.md#several-realms-tenants)"
                ))  # fmt: skip


def _authenticator_realm_problems(config: Mapping, components: list) -> Iterable[Problem]:
    """'authenticator-realm' on a node with several realms: one realm's component would be asked
    for another's logins (and refuse them)."""
    realms = [realm for worker in config.get("workers", []) for realm in worker.get("realms", []) or []
              if isinstance(realm, Mapping)]  # fmt: skip
    if len(components) < 2 and len(realms) < 2:
        return
    for where, service in _websockets(config):
        for method, auth in (service.get("auth") or {}).items():
            if isinstance(auth, Mapping) and auth.get("type") == "dynamic" and "authenticator-realm" in auth:
                yield Problem(f"{where}.auth.{method}.authenticator-realm", (
                    "this node has several realms, each authenticated by its own component (a component refuses "
                    "logins to any other realm): remove 'authenticator-realm' so that Crossbar asks the component "
                    "of the realm the client names"
                ))  # fmt: skip


# Component settings that act on the whole router worker (its transports), whichever realm says them.
WORKER_WIDE = {
    "'limits.hello_timeout_seconds'": lambda extra: (extra.get("limits") or {}).get(
        "hello_timeout_seconds", DEFAULT_HELLO_TIMEOUT_SECONDS
    ),  # the value in effect: the default when not set
    "'trusted_proxies'": lambda extra: sorted(extra.get("trusted_proxies") or []),
}


def _store_location(store: Mapping) -> str | None:
    """The SQLite file of a component's token store; None for Redis, which realms may share: on a
    node with several realms every key, stream and channel carries the realm (core/redis_url.realm_namespace)."""
    if store.get("redis_url"):
        return None
    name = store.get("sqlite", "tokens.sqlite")
    return f"sqlite {name}" if isinstance(name, str) else None


def _static_allows(permissions: Iterable, uri: str, action: str) -> bool:
    """Whether Crossbar's static permissions allow action on uri, as its RouterRoleStaticAuth
    decides: the permission with the longest URI that uri starts with (a later one of the same URI
    replaces an earlier), if it is a prefix rule or names uri exactly. Wildcard rules are left out."""
    by_uri = {p["uri"]: p for p in permissions if isinstance(p, Mapping) and isinstance(p.get("uri"), str)}
    candidates = [rule_uri for rule_uri in by_uri if uri.startswith(rule_uri)]
    if not candidates:
        return False
    best = by_uri[max(candidates, key=len)]
    if best.get("match", "exact") != "prefix" and best["uri"] != uri:
        return False
    allow = best.get("allow")
    return isinstance(allow, Mapping) and allow.get(action) is True


def _websockets(config: Mapping):
    """(path in the JSON, websocket config) of every WebSocket a client can reach: paths of web
    transports, and websocket (or universal) transports themselves."""
    for w, worker in enumerate(config.get("workers", [])):
        for t, transport in enumerate(worker.get("transports", [])):
            where = f"workers[{w}].transports[{t}]"
            if transport.get("type") == "websocket":
                yield where, transport
            if isinstance(transport.get("websocket"), Mapping):  # universal transport
                for name, service in transport["websocket"].items():
                    if isinstance(service, Mapping):
                        yield f"{where}.websocket.{name}", service
            for name, service in (transport.get("paths") or {}).items():
                if isinstance(service, Mapping) and service.get("type") == "websocket":
                    yield f"{where}.paths.{name}", service


def _transport_problems(config: Mapping) -> list[Problem]:
    problems = []
    for where, service in _websockets(config):
        for method, auth in (service.get("auth") or {}).items():
            expected = AUTHENTICATORS.get(method)
            if expected is None or not isinstance(auth, Mapping) or auth.get("type") != "dynamic":
                continue
            if auth.get("authenticator") != expected:
                problems.append(Problem(
                    f"{where}.auth.{method}.authenticator",
                    f"{_misspelled(auth.get('authenticator'), expected)}: every {method} login would "
                    f"fail with wamp.error.no_such_procedure; set it to {expected!r}",
                ))  # fmt: skip
    return problems


def _route_problems(config: Mapping, realm_name, policy_roles: Iterable[str]) -> list[Problem]:
    """Proxy workers forward a session only for the roles their routes name."""
    problems = []
    for w, worker in enumerate(config.get("workers", [])):
        if worker.get("type") != "proxy":
            continue
        routes = (worker.get("routes") or {}).get(realm_name)
        if not isinstance(routes, Mapping):
            problems.append(Problem(f"workers[{w}].routes", f"has no routes for realm {realm_name!r}"))
            continue
        for name in policy_roles:
            if name not in routes:
                problems.append(Problem(f"workers[{w}].routes.{realm_name}", (
                    f"has no route for the policy role {name!r}: its sessions would be refused by this "
                    "proxy; derive the config again (python -m authenticator proxy-config)"
                )))  # fmt: skip
    return problems


def _misspelled(given: object, expected: str) -> str:
    shown = repr(given)[:80]
    close = isinstance(given, str) and difflib.get_close_matches(given, [expected], n=1, cutoff=0.6)
    return f"{shown} is not {expected!r}" + (" (a misspelling?)" if close else "")
