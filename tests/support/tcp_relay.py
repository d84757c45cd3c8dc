"""A TCP relay on a fixed loopback port in front of a server (a router): stop() is the network
going away while the server stays up — every connection through it is closed on both sides and
the port refuses connections — and start() brings it back on the same port, so a client that
reconnects to the same URL gets through again."""

from __future__ import annotations

import socket
import threading

from tests.support.router import free_port


class TcpRelay:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.cuts = 0  # connections closed by stop()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> TcpRelay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-relay", daemon=True).start()
        return self

    def stop(self) -> int:
        """Close the port and every connection through it; how many were closed."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _shut(client)
            _shut(upstream)
        self.cuts += len(pairs)
        return len(pairs)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if listener is not self._listener:
                _shut(client)
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _shut(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _shut(source)
        _shut(sink)
        with self._lock:
            self._pairs = [pair for pair in self._pairs if source not in pair]


def _shut(sock: socket.socket) -> None:
    # shutdown first: it wakes a thread blocked in recv or accept on the socket, close alone does not.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
