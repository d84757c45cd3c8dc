"""What the router says when it starts: the configuration problems that stop it, one line each,
and the line that says it is ready, with the URL, the realm and where the keys come from."""

from __future__ import annotations

import os
from pathlib import Path

from authenticator.config.node_checks import check_node
from authenticator.config.node_config import (
    controller_config_file,
    read_node_config,
    running_config_file,
    websocket_url,
)
from authenticator.config.settings import Settings, key_sources


def node_config_file(cbdir: Path) -> Path | None:
    """The node config this router worker's controller was started with (None when that cannot be
    known). The worker's parent is Crossbar's node controller; it wrote the pid file of the node
    directory before it started any worker. Its command line is the fallback for a Crossbar that
    writes none: it is only readable where the controller was not retitled (no setproctitle)."""
    controller = os.getppid()
    found = running_config_file(cbdir, controller)
    if found is not None:
        return found
    try:
        cmdline = Path(f"/proc/{controller}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return controller_config_file(cbdir, cmdline)


def read_node(config_file: Path | None) -> tuple[dict | None, list[str]]:
    """The node config (read once at start, for the checks and the ready line), or why not."""
    if config_file is None:
        return None, []
    try:
        return read_node_config(config_file), []
    except (OSError, ValueError) as error:
        return None, [f"{config_file}: cannot be read to check it: {type(error).__name__}"]


def node_problems(
    config: dict | None, config_file: Path | None, settings: Settings, realm: str | None = None
) -> list[str]:
    if config is None:
        return []
    return [p.line(config_file) for p in check_node(config, settings.policy.roles, realm)]


def ready_line(config: dict | None, settings: Settings, realm: str, config_file: Path | None = None) -> str:
    """The line every start ends with: the node config it runs (as its configuration errors name
    it), where clients connect, the realm and where the keys come from."""
    url = websocket_url(config) if config is not None else None
    source = f"{config_file}: " if config is not None and config_file is not None else ""
    where = f"clients connect to {url}, " if url else ""
    return f"authenticator: ready: {source}{where}realm {realm}; keys: {key_sources(settings)}"
