"""What a router must not tell a client about itself (issue 20, finding 7): Crossbar's own details
in WELCOME, and its status page on the WebSocket path. Shared by the router tests in both
deployments (tests/router/test_hostile_clients.py) and behind nginx (test_behind_nginx.py)."""

from __future__ import annotations

import json
import re
import socket

from tests.support.raw_websocket import RawWebSocket
from tests.support.tokens import mint, unique


def crossbar_details(value, where: str = "details") -> list[str]:
    """Where in a WAMP message (any depth) a key Crossbar adds for itself sits: x_cb_*, transport."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (key.startswith("x_cb_") or key == "transport"):
                found.append(f"{where}.{key}")
            found += crossbar_details(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += crossbar_details(item, f"{where}[{i}]")
    return found


def leaves(value):
    """Every value of a JSON document that is not a dict or a list."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def raw_welcomes(port: int, origin: str, wrap=None) -> dict[str, list]:
    """The WELCOME messages as they come over the wire (not as a client library keeps them):
    a ticket login, a cookie login and, when anonymous access is on, a visitor."""
    token = mint(unique("alice"), ["user"])
    logins = {"ticket": ({}, mint(unique("alice"), ["user"])), "cookie": ({"Cookie": f"cbjwt={token}"}, None)}
    welcomes = {}
    for name, (headers, ticket) in logins.items():
        ws = RawWebSocket(port, origin=origin, headers=headers, wrap=wrap)
        try:
            welcomes[name] = ws.welcome(ticket)
        finally:
            ws.close()
    return welcomes


def assert_no_crossbar_details(welcomes: dict[str, list], worker_pids: list[int], node_id: str) -> None:
    for name, welcome in welcomes.items():
        details = welcome[2]
        assert details["authrole"] == "user", (name, details)
        assert crossbar_details(details) == [], (name, details)  # neither at the top nor in authextra
        values = list(leaves(details))
        assert node_id not in values, (name, details)  # the host name, or the production node id
        assert not [v for v in values if type(v) is int and v in worker_pids], (name, details)
        assert "cbjwt" not in json.dumps(welcome), (name, details)  # no echo of the upgrade's headers


def plain_get(port: int, target: str, wrap=None) -> bytes:
    """What the server answers a plain GET (no upgrade), whole."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if wrap is not None:
        sock = wrap(sock)
    with sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


STATUS_TARGETS = (
    "/ws",
    "/ws?redirect=https%3A%2F%2Fevil.example%2F",
    "/ws?redirect=https%3A%2F%2Fevil.example%2F&after=0",
)


def assert_no_status_page(answers: dict[str, bytes], worker_pids: list[int]) -> None:
    import autobahn
    import crossbar

    for target, answer in answers.items():
        text = answer.decode("latin-1")
        status = text.split(" ", 2)[1]
        assert status not in ("200", "303"), (target, text[:300])  # no page, no redirect
        assert "Location:" not in text and "evil.example" not in text, (target, text[:300])
        for version in (crossbar.__version__, autobahn.__version__):
            assert version not in text, (target, version, text[:300])
        assert not any(re.search(rf"\b{pid}\b", text) for pid in worker_pids), (target, text[:300])
