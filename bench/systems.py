"""The systems `make bench` compares, each started on the server core and torn down after.

- jwt:      the shipped .crossbar/config.json as is (dynamic JWT ticket auth, dynamic authorizer).
- ceiling:  the same router with Crossbar's static ticket auth and static permissions, no
            authenticator component: what any authenticator can at most reach.
- minimal:  the ceiling's static permissions, with a minimal PyJWT dynamic ticket authenticator
            (bench/minimal_authenticator.py): the floor for login with a dynamic authenticator.
- minimal-patched: `minimal` with crossbar-jwt's debug-formatting patch (only with --systems)
- stock:    Crossbar as it comes: the ceiling's realm and auth, but none of the shipped config's
            tuning and `crossbar start`'s default log level.
- socketio: socket.io 4 with a jsonwebtoken middleware (bench/socketio_server.js).
- jwt-1proxy, jwt-2proxy: the scale-out config (authenticator.config.proxy_profile) with 1 and 2 proxy workers
  in front of the router worker, allowed both cores (session establishment only).

The fan-out benchmark adds one per-user rule to the JWT policy (a user's devices share
app.user.{authid}.status); the static systems allow the whole app.user. prefix instead, which is
what a static configuration has to do.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tests.support.router import REPO, RouterProcess, wait_for

STATIC_TICKET = "static-bench-ticket"
PER_USER_STATUS = "app.user.{authid}.status"
SERVER_CPU = "0"
ALL_CPUS = "0,1"
NODE = "node"


def _router(config: dict) -> dict:
    return config["workers"][0]


def _add_per_user_status_rule(config: dict) -> None:
    extra = _router(config)["components"][0]["extra"]
    user = next(r for r in extra["policy"]["roles"] if r["name"] == "user")
    user["rules"].append({"uri": PER_USER_STATUS, "match": "exact", "allow": {"subscribe": True, "publish": True}})


def _static_permission(uri: str, publish: bool, disclose_publisher: bool) -> dict:
    return {
        "uri": uri, "match": "prefix",
        "allow": {"call": False, "register": False, "publish": publish, "subscribe": True},
        "disclose": {"caller": False, "publisher": disclose_publisher}, "cache": True,
    }  # fmt: skip


def _make_static(config: dict) -> None:
    """Static ticket principals and static permissions mirroring the shipped policy for users."""
    router = _router(config)
    router.pop("components", None)
    router["realms"][0]["roles"] = [
        {"name": "user", "permissions": [
            _static_permission("app.chat.", publish=True, disclose_publisher=True),
            _static_permission("app.public.", publish=False, disclose_publisher=False),
            _static_permission("app.user.", publish=True, disclose_publisher=False),
        ]},
    ]  # fmt: skip
    paths = router["transports"][0]["paths"]
    paths.pop("auth", None)  # the demo token issuer reads the authenticator's configuration
    ws = paths["ws"]
    ws["auth"] = {"ticket": {"type": "static", "principals": {"alice": {"ticket": STATIC_TICKET, "role": "user"}}}}


MINIMAL_ROLE = "minimal-authenticator"


def _make_minimal_patched(config: dict) -> None:
    """`minimal`, with crossbar-jwt's debug-formatting patch in its worker."""
    _make_minimal(config)
    _router(config)["components"][0]["classname"] = (
        "bench.minimal_authenticator.MinimalAuthenticatorWithoutDebugFormatting"
    )


def _make_minimal(config: dict) -> None:
    """The ceiling, but tickets are JWTs checked by a ten-line PyJWT component (nothing else)."""
    from bench.minimal_authenticator import PROCEDURE

    _make_static(config)
    router = _router(config)
    router["options"]["pythonpath"] = ["..", str(REPO)]
    router["realms"][0]["roles"].append({"name": MINIMAL_ROLE, "permissions": [
        {"uri": PROCEDURE, "match": "exact", "allow": {"call": False, "register": True, "publish": False,
                                                        "subscribe": False},
         "disclose": {"caller": False, "publisher": False}, "cache": True},
    ]})  # fmt: skip
    router["components"] = [{"type": "class", "classname": "bench.minimal_authenticator.MinimalAuthenticator",
                             "realm": "realm1", "role": MINIMAL_ROLE}]  # fmt: skip
    ws = router["transports"][0]["paths"]["ws"]
    ws["auth"] = {"ticket": {"type": "dynamic", "authenticator": PROCEDURE}}


def _make_stock(config: dict) -> None:
    _make_static(config)
    router = _router(config)
    # Stock: nothing of the shipped tuning (websocket options, realm options, worker options).
    router["options"] = {"pythonpath": [".."]}
    router["realms"][0].pop("options", None)
    ws = router["transports"][0]["paths"]["ws"]
    for key in ("options", "serializers"):
        ws.pop(key, None)


class CrossbarSystem:
    def __init__(
        self, name: str, edit, loglevel: str | None, auth: dict, secret: str, edit_extra=None, proxies: int = 0
    ) -> None:  # fmt: skip
        self.name, self.auth, self.secret, self.proxies = name, auth, secret, proxies
        self._edit, self._edit_extra, self._loglevel = edit, edit_extra, loglevel
        self.node: RouterProcess | None = None

    def start(self) -> CrossbarSystem:
        def edit(config):
            if self._edit:
                self._edit(config)
            if self._edit_extra:
                self._edit_extra(config)

        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.node = RouterProcess(
            workdir, env={"JWT_SECRET": self.secret}, edit_config=edit, loglevel=self._loglevel or shipped_loglevel(),
            # Proxy workers exist to use more cores: they get both (the generator shares core 1).
            cpus=ALL_CPUS if self.proxies else SERVER_CPU, proxies=self.proxies,
        ).start()  # fmt: skip
        return self

    @property
    def target(self) -> dict:
        return {"kind": "wamp", "url": self.node.url, "auth": self.auth}

    def server_pids(self) -> list[int]:
        """Where the server's CPU goes: the controller too (it relays the workers' log lines)."""
        return self.node.node_pids()

    def session_pids(self) -> list[int]:
        """Where sessions live (memory): the workers."""
        return self.node.worker_pids()

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()


class SocketIoSystem:
    name = "socketio"

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.auth = {"type": "jwt", "sub": "alice", "roles": ["user"]}
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> SocketIoSystem:
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, NODE, str(REPO / "bench" / "socketio_server.js"), "0"],
            env={**os.environ, "JWT_SECRET": self.secret}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = wait_for(self.process.stdout.readline, 30, "the socket.io server to listen")
        self.port = int(line.split()[1])
        return self

    @property
    def target(self) -> dict:
        return {"kind": "socketio", "url": f"http://127.0.0.1:{self.port}", "auth": self.auth}

    def server_pids(self) -> list[int]:
        return [self.process.pid]

    session_pids = server_pids

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def shipped_loglevel() -> str:
    """The log level `make run` starts the router with (the Makefile's LOGLEVEL default)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("LOGLEVEL ?="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("the Makefile no longer sets LOGLEVEL ?= ...; update bench/systems.py")


def make_systems(secret: str, *, fanout: bool = False, proxies: bool = False, minimal_patched: bool = False) -> list:
    jwt_auth = {"type": "jwt", "sub": "alice", "roles": ["user"]}
    static_auth = {"type": "static", "authid": "alice", "ticket": STATIC_TICKET}
    extra = _add_per_user_status_rule if fanout else None
    systems = [
        CrossbarSystem("jwt", None, None, jwt_auth, secret, edit_extra=extra),
        CrossbarSystem("ceiling", _make_static, None, static_auth, secret),
        CrossbarSystem("minimal", _make_minimal, None, jwt_auth, secret),
        CrossbarSystem("stock", _make_stock, "info", static_auth, secret),
        SocketIoSystem(secret),
    ]
    if minimal_patched:  # bench.run --only sessions --systems jwt,minimal,minimal-patched
        systems.append(CrossbarSystem("minimal-patched", _make_minimal_patched, None, jwt_auth, secret))
    if proxies:  # the scale-out config (docs/scaling.md): 1 and 2 proxy workers
        systems += [CrossbarSystem(f"jwt-{n}proxy", None, None, jwt_auth, secret, proxies=n) for n in (1, 2)]
    return systems


BRIDGE_ROLE = "bridge"
HTTP_TOPIC = "app.public.bench"


def _add_crossbar_bridge(config: dict) -> None:
    """Crossbar's own HTTP bridge beside our /publish, in the same router worker: its ``publisher``
    path, static role, no signature (its fastest form), publisher disclosed like the backend rule."""
    router = _router(config)
    router["realms"][0]["roles"].append({"name": BRIDGE_ROLE, "permissions": [
        {"uri": "app.", "match": "prefix", "allow": {"call": False, "register": False, "publish": True,
                                                     "subscribe": False},
         "disclose": {"caller": False, "publisher": True}, "cache": True},
    ]})  # fmt: skip
    router["transports"][0]["paths"]["bridge"] = {"type": "publisher", "realm": "realm1", "role": BRIDGE_ROLE}


def http_publish_node(secret: str) -> RouterProcess:
    """The shipped config plus Crossbar's bridge, pinned to the server core."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    return RouterProcess(
        workdir, env={"JWT_SECRET": secret}, edit_config=_add_crossbar_bridge, loglevel=shipped_loglevel(),
        cpus=SERVER_CPU,
    ).start()  # fmt: skip
