"""HTTP publish load generator: keep-alive connections, a fixed number of requests in flight, and one
WAMP subscriber that counts what arrives (make bench; never a test).

    python -m bench.http_load '{"url": "http://127.0.0.1:8080/publish", "token": "...",
                                "ws": "ws://127.0.0.1:8080/ws", "topic": "app.public.bench",
                                "requests": 5000, "inflight": 20}'

Prints one JSON line: rate (requests/s), p50_ms, p99_ms, errors, events (received by the subscriber),
seconds, generator_cpu_percent. Plain asyncio streams and a hand-written HTTP/1.1 client: a library
client costs more CPU per request than the server under test.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import txaio

txaio.use_asyncio()

from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402


class Subscriber(ApplicationSession):
    def __init__(self, config, topic, joined):
        super().__init__(config)
        self.topic, self.joined, self.events = topic, joined, 0

    def onConnect(self):
        self.join(self.config.realm, authmethods=["anonymous"])

    async def onJoin(self, details):
        await self.subscribe(self.on_event, self.topic)
        self.joined.set_result(self)

    def on_event(self, *args, **kwargs):
        self.events += 1


async def subscribe(ws_url: str, topic: str) -> Subscriber:
    loop = asyncio.get_running_loop()
    joined = loop.create_future()
    factory = WampWebSocketClientFactory(lambda: Subscriber(ComponentConfig(realm="realm1"), topic, joined), url=ws_url)
    parts = urlsplit(ws_url)
    await loop.create_connection(factory, parts.hostname, parts.port)
    return await asyncio.wait_for(joined, 15)


async def worker(url, request: bytes, left: list[int], latencies: list[float], errors: list[int]) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while left[0] > 0:
            left[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length, chunked = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                elif line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                    chunked = True  # Crossbar's bridge answers chunked
            if chunked:
                while (size := int((await reader.readline()).strip(), 16)) > 0:
                    await reader.readexactly(size + 2)
                await reader.readline()
            else:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status_line.split(b" ", 2)[1] != b"200":
                errors[0] += 1
    finally:
        writer.close()


async def run(job: dict) -> dict:
    subscriber = await subscribe(job["ws"], job["topic"])
    parts = urlsplit(job["url"])
    body = json.dumps({"topic": job["topic"], "args": ["bench"], "kwargs": {"n": 1}}).encode()
    headers = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
               f"Content-Length: {len(body)}"]  # fmt: skip
    if job.get("token"):
        headers.append(f"Authorization: Bearer {job['token']}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body
    left, latencies, errors = [job["requests"]], [], [0]
    cpu_before, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(job["url"], request, left, latencies, errors) for _ in range(job["inflight"])))
    seconds = time.perf_counter() - started
    deadline = time.monotonic() + 5
    while subscriber.events < len(latencies) - errors[0] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # the last events may trail the last answers
    cpu = time.process_time() - cpu_before
    subscriber.leave()
    latencies.sort()
    return {
        "rate": len(latencies) / seconds, "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "errors": errors[0], "events": subscriber.events,
        "requests": len(latencies), "seconds": seconds, "generator_cpu_percent": 100 * cpu / seconds,
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
