"""A loopback port in front of the router for HTTP clients, that fails the way a network and a load
balancer fail, on cue: closed (connection refused) until `open()`, then each request handled by the
next step of its script: "503" answers it itself (503 with Retry-After, as a router whose store is
down or a load balancer with no router behind it), "drop" forwards it whole to the router, reads
the router's answer and closes the client's connection without it (a publication made whose answer
was lost), "pass" forwards it and its answer. Past the script, every request passes. One request per
connection; it records each request's time and headers."""

from __future__ import annotations

import socket
import threading
import time

from tests.support.router import free_port

BUSY = b'{"error":"wamp.error.unavailable","message":"No router is available; retry."}'


class FlakyGateway:
    def __init__(self, target_port: int, script: list[str], retry_after: int = 2) -> None:
        self.target_port, self.retry_after = target_port, retry_after
        self.script = list(script)
        self.port = free_port()  # nothing listens on it until open(): connection refused
        self.requests: list[tuple[float, str, dict[str, str]]] = []  # (time, step, headers) per request
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=64)
        threading.Thread(target=self._accept, name="flaky-gateway", daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(30)
            request = _read_message(client)
            if request is None:
                return
            with self._lock:
                step = self.script.pop(0) if self.script else "pass"
                self.requests.append((time.monotonic(), step, _headers(request)))
            if step == "503":
                client.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (self.retry_after, len(BUSY), BUSY)
                )
                return
            with socket.create_connection(("127.0.0.1", self.target_port), timeout=30) as upstream:
                upstream.sendall(request)
                answer = _read_message(upstream)
            if step == "pass" and answer is not None:
                client.sendall(answer)
            # "drop": the router answered; the client gets a closed connection instead


def _read_message(sock: socket.socket) -> bytes | None:
    """One HTTP message whose body has a Content-Length (or none), whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(_headers(head).get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def _headers(message: bytes) -> dict[str, str]:
    head = message.partition(b"\r\n\r\n")[0].decode("latin-1")
    lines = head.split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
