"""What the router says when it starts: the configuration problems that stop it, one line each,
and the line that says it is ready, with the URL, the realm and where the keys come from."""

from __future__ import annotations

import os
from pathlib import Path

from authenticator.config.node_checks import check_node
from authenticator.config.node_config import controller_config_file, read_node_config, websocket_url
from authenticator.config.settings import Settings, key_sources


def node_config_file(cbdir: Path) -> Path | None:
    """The node config this router worker's controller was started with (None when that cannot be
    read: not Linux, or another launcher). The worker's parent is Crossbar's node controller."""
    try:
        cmdline = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
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


def node_problems(config: dict | None, config_file: Path | None, settings: Settings) -> list[str]:
    if config is None:
        return []
    return [p.line(config_file) for p in check_node(config, settings.policy.roles)]


def ready_line(config: dict | None, settings: Settings, realm: str) -> str:
    url = websocket_url(config) if config is not None else None
    where = f"clients connect to {url}, " if url else ""
    return f"authenticator: ready: {where}realm {realm}; keys: {key_sources(settings)}"
