"""The code examples of the README, so tests run exactly what a newcomer pastes."""

from __future__ import annotations

import re

from tests.support.router import REPO


def readme_snippet(marker: str, language: str) -> str:
    """The first ```language block after the first line of README.md that starts with marker."""
    text = (REPO / "README.md").read_text()
    start = re.search(rf"^{re.escape(marker)}", text, re.M)
    if start is None:
        raise LookupError(f"README.md has no line starting with {marker!r}")
    block = re.compile(rf"^```{language}\n(.*?)^```", re.M | re.S).search(text, start.end())
    if block is None:
        raise LookupError(f"README.md has no {language} block after {marker!r}")
    return block.group(1)
