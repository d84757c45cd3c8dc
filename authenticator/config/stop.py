"""How a worker stops on a configuration that cannot work: the problems as the first lines of the
node's output, and the exit status that says so. Used by the start-up checks and the patch guard."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

# The exit status of a router worker stopped by its configuration (the node then stops too).
CONFIG_EXIT = 78  # EX_CONFIG


def stop_for_configuration(lines: list[str]) -> NoReturn:
    """End the router worker with the problems as the first lines of the node's output.

    An exception here would reach the operator under three tracebacks of Crossbar's start-up
    machinery (the one line that matters buried in ~50); a configuration that cannot work is fatal
    for the node anyway (Crossbar stops the node when a worker exits)."""
    out = sys.stderr
    for line in lines:
        out.write(f"CONFIGURATION ERROR: {line}\n")
    out.write("The router did not start. Fix the configuration and start it again ")
    out.write("(python -m authenticator check runs the same checks without starting it).\n")
    out.flush()
    sys.stdout.flush()
    os._exit(CONFIG_EXIT)
