"""The one reader of Crossbar node configs (JSON, or YAML as Crossbar reads it), and what the rest
of the package looks up in them: the authenticator component, its ``extra``, the WebSocket URL."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from authenticator.contract import COMPONENT_CLASS, COMPONENT_CLASSES, DEPRECATED_PATHS
from authenticator.core.settings import ConfigError


def controller_config_file(cbdir: Path, controller_cmdline: list[str]) -> Path | None:
    """The node config file that `crossbar start` was given (its `--config`, relative to the node
    directory as Crossbar reads it), or the one Crossbar picks without it; None if there is none."""
    for i, arg in enumerate(controller_cmdline):
        name, has_value, value = arg.partition("=")
        # argparse takes any unambiguous prefix: --conf, --confi (crossbar start has no other --con...)
        if len(name) >= 5 and "--config".startswith(name):
            if has_value:
                return cbdir / value
            if i + 1 < len(controller_cmdline):
                return cbdir / controller_cmdline[i + 1]
    for name in ("config.yaml", "config.json"):  # Crossbar's own order (node/main.py)
        if (cbdir / name).exists():
            return cbdir / name
    return None


# What `crossbar start` writes into its node directory before it starts a worker, and removes when
# it stops: {"pid": <the controller's pid>, "argv": [...], "options": {"config": "<file name>", ...}}.
# Its options.config is the file the controller loaded (its --config, or the one it picked without
# one); the controller's own command line cannot tell, Crossbar retitles the process.
CROSSBAR_PID_FILE = "node.pid"


def crossbar_config_file(cbdir: Path, name: str | None = None) -> Path:
    """The node config `crossbar start --cbdir CBDIR [--config NAME]` reads: NAME in the node
    directory, or without it Crossbar's own choice (config.yaml, then config.json; config.json when
    there is neither, for the message that says so)."""
    if name:
        return cbdir / name
    return controller_config_file(cbdir, []) or cbdir / "config.json"


def started_config_file(cbdir: Path, pid_file_text: str, controller_pid: int) -> Path | None:
    """The node config the controller with this pid loaded, from the node directory's pid file
    (CROSSBAR_PID_FILE); None when the file is not that controller's (a stale file of a node that
    crashed, another launcher) or names no config."""
    try:
        data = json.loads(pid_file_text)
    except ValueError:
        return None
    if not isinstance(data, dict) or type(data.get("pid")) is not int or data["pid"] != controller_pid:
        return None  # (True == 1: a bool must not match the controller of a container, pid 1)
    options = data.get("options")
    name = options.get("config") if isinstance(options, dict) else None
    if not isinstance(name, str) or not name or len(name) > 4096 or Path(name).suffix not in (".json", ".yaml"):
        return None  # not a node config Crossbar would have loaded
    return cbdir / name


def running_config_file(cbdir: Path, controller_pid: int | None = None) -> Path | None:
    """In a process Crossbar's controller started (a router worker, its components and wsgi apps):
    the node config that controller loaded, from the node directory's pid file; None when there is
    none of that controller's."""
    controller_pid = os.getppid() if controller_pid is None else controller_pid
    text = _small_own_file(cbdir / CROSSBAR_PID_FILE)
    return None if text is None else started_config_file(cbdir, text, controller_pid)


MAX_PID_FILE_BYTES = 64 * 1024  # Crossbar's is ~2 KB: its options and argv


def _small_own_file(path: Path) -> str | None:
    """The text of a regular file of this user's, of at most MAX_PID_FILE_BYTES; None for anything
    else: a link (to /dev/zero), a FIFO (a read that never returns), another user's file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > MAX_PID_FILE_BYTES:
            return None
        return os.read(fd, MAX_PID_FILE_BYTES + 1)[:MAX_PID_FILE_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def read_node_config(path: Path) -> dict:
    """A node config file as Crossbar reads it: JSON for .json, YAML for .yaml; Crossbar refuses to
    start with any other name (.yml too), so a check that read one would pass a node that cannot start."""
    if path.suffix not in (".json", ".yaml"):
        raise ValueError(f"crossbar start reads a node config named .json or .yaml, not {path.suffix or 'no suffix'}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".yaml":
        import yaml  # PyYAML comes with Crossbar

        return yaml.safe_load(text)

    return json.loads(text)


def find_components(config: Mapping) -> list[tuple[int, int, dict, dict]]:
    """(worker index, component index, worker, component) of every authenticator component: one
    per realm it serves (docs/configuration.md#several-realms)."""
    return [
        (w, c, worker, component)
        for w, worker in enumerate(config.get("workers", []))
        for c, component in enumerate(worker.get("components", []))
        if component.get("classname") in COMPONENT_CLASSES
    ]


def find_component(config: Mapping, realm: str | None = None):
    """(worker index, component index, worker, component) of the authenticator component of
    `realm` (None: the first one), or None."""
    for found in find_components(config):
        if realm is None or found[3].get("realm") == realm:
            return found
    return None


def authenticator_realms(config: Mapping | None) -> tuple[str, ...]:
    """The realms the node's authenticator components serve, in the config's order."""
    if not isinstance(config, Mapping):
        return ()
    return tuple(str(found[3].get("realm")) for found in find_components(config))


def extra_place(config_file, realm: str | None, node_realms: tuple[str, ...]) -> str:
    """Where a component's configuration errors are, as the start and `check` name it: with several
    realms, the realm's component."""
    if len(node_realms) > 1:
        return f"{config_file}: the authenticator component of realm {realm!r}: its extra"
    return f"{config_file}: the authenticator component's extra"


def realm_has_rlinks(config: Mapping | None, realm: str) -> bool:
    """Whether a router worker with an authenticator component links `realm` to other nodes (its
    ``realms[].rlinks``, as `cluster-config` writes them)."""
    if not isinstance(config, Mapping):
        return False
    for _w, _c, worker, _component in find_components(config):
        for candidate in worker.get("realms") or ():
            if isinstance(candidate, Mapping) and candidate.get("name") == realm and candidate.get("rlinks"):
                return True
    return False


def _one_line(error: Exception) -> str:
    """A parser's error on one line (PyYAML's span several: the problem, then the place drawn)."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{type(error).__name__}: {problem} (line {mark.line + 1}, column {mark.column + 1})"
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def load_node_config(config_file: Path) -> dict:
    """A node config for a command: read as Crossbar reads it, or ConfigError saying what to do."""
    try:
        config = read_node_config(config_file)
    except FileNotFoundError as error:
        raise ConfigError(
            f"{config_file} does not exist; pass --cbdir pointing at your .crossbar folder "
            "(and --config naming the node config in it)"
        ) from error
    except Exception as error:  # noqa: BLE001 - JSON's ValueErrors, PyYAML's own errors: one line each
        raise ConfigError(f"{config_file} cannot be read: {_one_line(error)}") from error
    if not isinstance(config, Mapping):
        raise ConfigError(f"{config_file} is not a node config (an object with 'workers')")
    problem = _shape_problem(config)
    if problem is not None:
        raise ConfigError(f"{config_file}: {problem}; see .crossbar/config.json for the shape")
    return dict(config)


def _shape_problem(config: Mapping) -> str | None:
    """The first place where a node config is not shaped as Crossbar's (the lists of objects the
    commands walk), or None. Crossbar checks the rest when it starts."""
    workers = config.get("workers", [])
    if not isinstance(workers, list):
        return "'workers' must be a list of objects"
    for w, worker in enumerate(workers):
        if not isinstance(worker, Mapping):
            return f"workers[{w}] must be an object"
        for key in ("components", "transports", "realms"):
            items = worker.get(key, [])
            if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
                return f"workers[{w}].{key} must be a list of objects"
        for c, component in enumerate(worker.get("components", [])):
            if not isinstance(component.get("extra", {}), Mapping):
                return f"workers[{w}].components[{c}].extra must be an object"
    return None


def authenticator_component(config: Mapping, config_file: Path, realm: str | None = None) -> dict:
    """The authenticator component's config in a node config (of `realm`; None: the only one), or
    ConfigError naming the file and what to do."""
    if realm is None:
        realms = authenticator_realms(config)
        if len(realms) > 1:
            raise ConfigError(f"{config_file} serves the realms {', '.join(realms)}: pass --realm to choose one")
    found = find_component(config, realm)
    if found is None:
        if realm is not None and find_components(config):
            raise ConfigError(f"{config_file} has no authenticator component for realm {realm!r}; it serves "
                              f"{', '.join(authenticator_realms(config))}")  # fmt: skip
        raise ConfigError(f"{config_file} has no component with classname {COMPONENT_CLASS}")
    return dict(found[3])


def component_extra(config_file: Path, realm: str | None = None) -> dict:
    """The authenticator component's ``extra`` from a Crossbar node config (for the CLI)."""
    return dict(authenticator_component(load_node_config(config_file), config_file, realm).get("extra", {}))


def websocket_url(config: Mapping) -> str | None:
    """ws://host:port/path of the first web transport's WebSocket path in a node config dict."""
    for worker in config.get("workers", []):
        for transport in worker.get("transports", []):
            endpoint = transport.get("endpoint", {})
            for path, service in transport.get("paths", {}).items():
                if service.get("type") == "websocket":
                    host = endpoint.get("interface", "127.0.0.1")
                    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - mapping, not binding
                    scheme = "wss" if endpoint.get("tls") else "ws"
                    return f"{scheme}://{host}:{endpoint.get('port')}/{path}"
    return None


DEFAULT_MAX_MESSAGE_SIZE = 65_536  # what the shipped transports allow


def smallest_max_message_size(config: Mapping | None) -> int:
    """The smallest `max_message_size` a transport of the node sets, on the transport or on one
    of its web paths (a WebSocket path's options): what one WAMP message to a client may weigh on
    its way out. DEFAULT_MAX_MESSAGE_SIZE when none sets one."""
    sizes = []
    for worker in (config or {}).get("workers") or ():
        for transport in (worker.get("transports") or ()) if isinstance(worker, Mapping) else ():
            if not isinstance(transport, Mapping):
                continue
            paths = transport.get("paths") if isinstance(transport.get("paths"), Mapping) else {}
            for holder in (transport, *paths.values()):
                options = holder.get("options") if isinstance(holder, Mapping) else None
                if isinstance(options, Mapping) and type(options.get("max_message_size")) is int:
                    sizes.append(options["max_message_size"])
    return min(sizes, default=DEFAULT_MAX_MESSAGE_SIZE)


def deprecated_paths_in(config: Mapping) -> list[tuple[str, str]]:
    """(where in the config, old dotted path) of every 0.1 path a node config names: they work in
    this release only (CHANGELOG.md)."""
    return [(where, old) for where, old, _ in _python_paths(config) if old in DEPRECATED_PATHS]


def with_current_paths(config: Mapping) -> dict:
    """A copy of a node config naming every Python object by its current path (what a derived
    config is built from: a 0.1 config and a current one derive the same)."""
    import copy

    config = copy.deepcopy(dict(config))
    for _, old, holder in _python_paths(config):
        new = DEPRECATED_PATHS.get(old)
        if new is None:
            continue
        if "classname" in holder:
            holder["classname"] = new
        else:
            holder["module"], _, holder["object"] = new.rpartition(".")
    return config


def deprecated_path_lines(config: Mapping, config_file: Path | str) -> list[str]:
    return [f"{config_file}: {where}: {old} moved to {DEPRECATED_PATHS[old]}; the old path works in this "
            "release only (CHANGELOG.md): change it" for where, old in deprecated_paths_in(config)]  # fmt: skip


def _python_paths(node, where: str = ""):
    """(where, dotted path, the dict naming it) of every Python object a node config makes Crossbar load."""
    if isinstance(node, dict):
        if node.get("type") == "wsgi" and isinstance(node.get("module"), str):
            yield where or "/", f"{node['module']}.{node.get('object', 'application')}", node
        elif node.get("type") in ("class", "resource") and isinstance(node.get("classname"), str):
            yield where or "/", node["classname"], node
        for key, value in node.items():
            yield from _python_paths(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _python_paths(value, f"{where}[{index}]")
