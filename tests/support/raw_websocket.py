"""A WebSocket client on a plain socket: it does what a well-behaved library never would (send
half a request, never send HELLO, ignore pings, send a frame that lies about its length)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from dataclasses import dataclass

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE = 1, 2, 3, 4, 5


@dataclass
class Ended:
    after: float  # seconds from the start of the wait to the end of the connection
    close_code: int | None  # the server's close frame, if it sent one
    pings: int  # pings received (and answered, unless told not to)
    data: bytes  # anything else received


class RawWebSocket:
    def __init__(
        self, port: int, protocols: tuple[str, ...] = ("wamp.2.json",), origin: str | None = None, *,
        headers: dict[str, str] | None = None, wrap=None,
    ) -> None:  # fmt: skip
        """`headers`: more upgrade headers (a Cookie); `wrap`: socket -> socket (TLS, behind nginx)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if wrap is not None:
            self.sock = wrap(self.sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            *([f"Sec-WebSocket-Protocol: {', '.join(protocols)}"] if protocols else []),
            *([f"Origin: {origin}"] if origin is not None else []),
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]  # fmt: skip
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            response += chunk
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1]) if status_line else None
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        self.sock.sendall(frame(payload, opcode))

    def send_wamp(self, message: list) -> None:
        self.send(json.dumps(message).encode())

    def next_frame(self, deadline: float) -> tuple[int, bytes] | None:
        """The next frame, or None when the server ends the connection; TimeoutError at the deadline."""
        while True:
            parsed = _parse(self._buffer)
            if parsed is not None:
                opcode, payload, self._buffer = parsed
                return opcode, payload
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("the server kept the connection open") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk

    def next_message(self, timeout: float = 10) -> list | None:
        """The next WAMP message (pings answered), or None when the router closed the connection."""
        deadline = time.monotonic() + timeout
        while (received := self.next_frame(deadline)) is not None:
            opcode, payload = received
            if opcode == PING:
                self.send(payload, PONG)
            elif opcode == TEXT:
                return json.loads(payload)
            else:
                return None
        return None

    def wait_for_end(self, timeout: float, *, answer_pings: bool = True, answer_close: bool = True) -> Ended:
        """Wait (with a deadline) for the server to end the connection, as a peer that sends nothing."""
        started = time.monotonic()
        deadline = started + timeout
        close_code, pings, data = None, 0, b""
        while (received := self.next_frame(deadline)) is not None:
            opcode, payload = received
            if opcode == PING:
                pings += 1
                if answer_pings:
                    self.send(payload, PONG)
            elif opcode == CLOSE:
                close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                if answer_close:
                    self.send(payload[:2], CLOSE)
            else:
                data += payload
        return Ended(time.monotonic() - started, close_code, pings, data)

    def join(self, token: str) -> int:
        """HELLO with a ticket, AUTHENTICATE, WELCOME: the session id."""
        return self.welcome(token)[1]

    def welcome(self, token: str | None) -> list:
        """HELLO (with a ticket, or anonymous: a token the upgrade carries, or none), AUTHENTICATE
        when challenged: the whole WELCOME message as it came."""
        methods = ["ticket"] if token is not None else ["anonymous"]
        self.send_wamp([HELLO, "realm1", {"roles": {"publisher": {}, "subscriber": {}}, "authmethods": methods}])
        deadline = time.monotonic() + 10
        while True:
            received = self.next_frame(deadline)
            assert received is not None, "the server closed the connection during the login"
            opcode, payload = received
            if opcode == PING:
                self.send(payload, PONG)
                continue
            message = json.loads(payload)
            if message[0] == CHALLENGE:
                self.send_wamp([AUTHENTICATE, token, {}])
            else:
                assert message[0] == WELCOME, message
                return message

    def close(self) -> None:
        self.sock.close()


def frame(payload: bytes, opcode: int = TEXT, *, length: int | None = None) -> bytes:
    """A masked client frame; `length` declares another payload length than the one sent."""
    n = len(payload) if length is None else length
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 2**16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def _parse(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    if len(buffer) < 2:
        return None
    opcode, n, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
    if n == 126:
        if len(buffer) < 4:
            return None
        n, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif n == 127:
        if len(buffer) < 10:
            return None
        n, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    if len(buffer) < offset + n:
        return None
    return opcode, buffer[offset : offset + n], buffer[offset + n :]


def time_to_eof(sock: socket.socket, timeout: float) -> tuple[float, bytes]:
    """Seconds until the server closes a connection that sends nothing more (and what it sent)."""
    started = time.monotonic()
    deadline = started + timeout
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(f"the server kept the connection open for {timeout:.0f} s") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - started, received
        received += chunk
