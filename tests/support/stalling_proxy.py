"""A loopback TCP port in front of a real server (redis-server) that can stall: while stalled it
accepts connections and reads what they send but never answers — a hung server, the case socket
timeouts exist for. Otherwise it forwards both ways. The URL a router is configured with stays the
same, so a test can hang the store under a running router and bring it back.

It can also be cut (`cut()`): a network that went away while the server stays up. Every open
connection is closed on both sides, so its client sees the connection lost (a browser's WebSocket
notices, which Chromium's offline mode does not do to an open one), and new connections are closed
at once until `forward()`."""

from __future__ import annotations

import socket
import threading


class StallingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stalled = False
        self.cutting = False  # cut(): connections are closed, new ones at once
        self.swallowed = 0  # chunks read while stalled (requests that got no answer)
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="stalling-proxy", daemon=True).start()

    def stall(self) -> None:
        """From now on nothing is answered, on new and on open connections (their server side is
        cut; the client side stays open and silent)."""
        with self._lock:
            self.stalled = True
            links = list(self._links)
        for link in links:
            link.cut_upstream()

    def cut(self) -> None:
        """The network is gone: every open connection is closed on both sides, and each new one is
        closed at once, until forward()."""
        with self._lock:
            self.cutting = True
            links = list(self._links)
        for link in links:
            link.close()

    def forward(self) -> None:
        """Answer again: new connections reach the server; connections held silent are closed (their
        clients reconnect)."""
        with self._lock:
            self.cutting = False
            self.stalled = False
            silent = [link for link in self._links if link.upstream is None]
        for link in silent:
            link.close()

    def close(self) -> None:
        self._closed = True
        try:  # wake the accept loop
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            stalled = self.stalled
            if self.cutting:
                _shut(client)
                return
        upstream = None if stalled else socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        link = _Link(client, upstream)
        with self._lock:
            self._links.append(link)
        if upstream is not None:
            upstream.settimeout(None)
            threading.Thread(target=link.pump_back, args=(upstream,), daemon=True).start()
        try:
            while data := client.recv(65536):
                target = link.upstream
                if target is None:
                    with self._lock:
                        self.swallowed += 1
                    continue
                try:
                    target.sendall(data)
                except OSError:
                    link.upstream = None
        except OSError:
            pass
        finally:
            link.close()
            with self._lock:
                self._links.remove(link)


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream

    def pump_back(self, upstream: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                if self.upstream is not upstream:
                    return  # cut while this reply was on its way: a stalled server answers nothing
                self.client.sendall(data)
        except OSError:
            pass

    def cut_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            _shut(upstream)

    def close(self) -> None:
        self.cut_upstream()
        _shut(self.client)


def _shut(sock: socket.socket) -> None:
    # shutdown first: it wakes a thread blocked in recv on the socket, close alone does not.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
