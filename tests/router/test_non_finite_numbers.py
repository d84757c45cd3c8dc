"""NaN and Infinity through the real router (authenticator/patches/finite_json.py, docs/publishing.md).

Python's JSON parser reads ``NaN``, ``Infinity`` and ``-Infinity`` (and ``1e999`` as infinity), and
Autobahn wrote them back bare for the subscribers. That is not JSON: AutobahnJS under Node throws
in its message handler and receives nothing more on that connection, while its kit still says
"connected". Here a Node AutobahnJS subscriber must keep receiving after each hostile message,
whether it came over WAMP (its sender's connection is closed with the reason), over
``POST /publish`` (400 with the reason), or from a CBOR client carrying a float NaN (binary peers
get it; JSON peers do not, and the router says so once).
"""

from __future__ import annotations

import json
import os
import queue
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cbor2
import pytest

from tests.support.raw_websocket import BINARY, CHALLENGE, CLOSE, PING, PONG, WELCOME, RawWebSocket
from tests.support.router import REPO, RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique

PUBLISH, PUBLISHED, EVENT, CALL, AUTHENTICATE, HELLO = 16, 17, 36, 48, 5, 1
PROTOCOL_ERROR = 1002  # the WebSocket close code Autobahn ends a sender's connection with

# Subscribes to TOPIC with AutobahnJS under Node (JSON, the default serializer) and prints one JSON
# line per event; an exception anywhere (AutobahnJS decoding included) is printed, not fatal, so
# that "receives nothing more" is observed rather than a dead process.
NODE_SUBSCRIBER = r"""
const autobahn = require("autobahn");
const { ROUTER_URL: url, TOKEN: token, TOPIC: topic } = process.env;
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
process.on("uncaughtException", (error) => say({ uncaught: String(error) }));
const connection = new autobahn.Connection({
  url, realm: "realm1", protocols: ["wamp.2.json"], max_retries: 0,
  authmethods: token ? ["ticket"] : ["anonymous"], onchallenge: () => token,
});
connection.onopen = async (session) => {
  await session.subscribe(topic, (args) => say({ event: args }));
  say({ subscribed: session.id });
};
connection.onclose = (reason, details) => { say({ closed: reason, details }); return true; };
connection.open();
process.stdin.on("end", () => { try { connection.close(); } catch (e) {} setTimeout(() => process.exit(0), 100); });
process.stdin.resume();
"""


class NodeSubscriber:
    def __init__(self, workdir: Path, url: str, token: str | None, topic: str) -> None:
        node_modules = REPO / "bench" / "node_modules"
        if not (node_modules / "autobahn").exists():
            pytest.fail("bench/node_modules is missing: run `make test`, which installs it")
        script = workdir / "subscriber.js"
        script.write_text(NODE_SUBSCRIBER)
        env = {**os.environ, "NODE_PATH": str(node_modules), "ROUTER_URL": url, "TOKEN": token or "", "TOPIC": topic}
        self.process = subprocess.Popen(["node", str(script)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(json.loads(line)) for line in self.process.stdout],
                         daemon=True).start()  # fmt: skip
        assert "subscribed" in self.next_line(), "the Node subscriber did not subscribe"

    def next_line(self, timeout: float = 10) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("the Node subscriber printed nothing more") from None

    def next_event(self, timeout: float = 10) -> list:
        line = self.next_line(timeout)
        assert "event" in line, line  # an exception or a closed connection instead of the event
        return line["event"]

    def stop(self) -> str:
        """Ends the subscriber; its stderr (AutobahnJS logs a decoding error there)."""
        _, stderr = self.process.communicate(timeout=10)
        rest = [line for line in self.lines.queue if "closed" not in line]  # its own close
        assert rest == [], rest
        return stderr


def close_of(ws: RawWebSocket, timeout: float = 10) -> tuple[int | None, str, list]:
    """Reads until the server closes: (close code, close reason, other messages received)."""
    deadline, received = time.monotonic() + timeout, []
    while (frame := ws.next_frame(deadline)) is not None:
        opcode, payload = frame
        if opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            return code, payload[2:].decode("utf-8", "replace"), received
        if opcode == PING:
            ws.send(payload, PONG)
        else:
            received.append(payload)
    return None, "", received


def published(ws: RawWebSocket, topic: str, request: int, value) -> None:
    ws.send_wamp([PUBLISH, request, {"acknowledge": True}, topic, [value]])
    deadline = time.monotonic() + 10
    while True:
        opcode, payload = ws.next_frame(deadline)
        if opcode == PING:
            ws.send(payload, PONG)
            continue
        answer = json.loads(payload)
        assert answer[:2] == [PUBLISHED, request], answer
        return


def hostile_wamp_messages(topic: str) -> list[tuple[str, bytes | list, str]]:
    """(what, the message, what the close reason names). Bytes go out as they are; a list through
    Python's json.dumps, which writes NaN by default: any Python client can send this."""
    return [
        ("PUBLISH args through Python's json.dumps", [PUBLISH, 1, {"acknowledge": True}, topic, [float("nan")]], "NaN"),
        ("PUBLISH kwargs", b'[16, 1, {"acknowledge": true}, "%s", [], {"x": Infinity}]' % topic.encode(), "Infinity"),
        ("deep in args", b'[16, 1, {}, "%s", [[{"a": [-Infinity]}]]]' % topic.encode(), "-Infinity"),
        ("a number beyond a double", b'[16, 1, {}, "%s", [1e999]]' % topic.encode(), "1e999"),
        ("CALL", b'[48, 1, {}, "authenticator.refresh", [NaN]]', "NaN"),
    ]  # fmt: skip


def test_a_wamp_message_with_nan_or_infinity_closes_its_sender_with_the_reason_and_node_subscribers_keep_receiving(
    router, tmp_path
):
    topic = f"app.chat.{unique('finite')}"
    sender = unique("alice")
    subscriber = NodeSubscriber(tmp_path, router.url, mint(unique("bob")), topic)
    publisher = RawWebSocket(router.port)
    try:
        publisher.join(mint(sender))
        published(publisher, topic, 1, "before")
        assert subscriber.next_event() == ["before"]

        # Before any login: a HELLO is parsed as strictly as any other message.
        ws = RawWebSocket(router.port)
        ws.send(b'[1, "realm1", {"roles": {"subscriber": {}}, "authmethods": ["anonymous"], "authextra": {"a": NaN}}]')
        code, reason, received = close_of(ws)
        assert (code, received) == (PROTOCOL_ERROR, []) and "NaN is not JSON: send null or a string" in reason, reason

        for what, hostile, named in hostile_wamp_messages(topic):
            ws = RawWebSocket(router.port)
            ws.join(mint(sender))
            if isinstance(hostile, list):
                ws.send_wamp(hostile)
            else:
                ws.send(hostile)
            code, reason, received = close_of(ws)
            assert code == PROTOCOL_ERROR, (what, code, reason)
            assert f"NonFiniteNumber {named} is" in reason and "send " in reason, (what, reason)
            assert received == [], (what, received)  # no PUBLISHED, no RESULT: nothing of it was taken

        published(publisher, topic, 2, "marker")
        # The next event is the marker: none of the hostile publications arrived, and the subscriber
        # still decodes what comes.
        assert subscriber.next_event() == ["marker"]
    finally:
        publisher.close()
        stderr = subscriber.stop()
    assert "JSON decoding error" not in stderr, stderr


def post_publish(router, body: bytes, token: str) -> tuple[int, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{router.port}/publish", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_post_publish_with_nan_or_infinity_is_400_saying_why_and_node_subscribers_keep_receiving(router, tmp_path):
    topic = f"app.public.{unique('finite')}"
    token = mint(unique("backend"), ["backend"])
    subscriber = NodeSubscriber(tmp_path, router.url, None, topic)  # anonymous: app.public. is theirs to read
    try:
        hostile = [
            (b'{"topic": "%s", "args": [NaN]}', "The body carries NaN, which is not JSON"),
            (b'{"topic": "%s", "kwargs": {"x": {"y": Infinity}}}', "The body carries Infinity, which is not JSON"),
            (b'{"topic": "%s", "args": [1e999]}', "The body carries the number 1e999, beyond the range of a double"),
            # a batch is refused whole: its good publication is not published either
            (b'[{"topic": "%s", "args": ["ok"]}, {"topic": "%s", "args": [-Infinity]}]', "carries -Infinity"),
        ]  # fmt: skip
        for body, says in hostile:
            status, answer = post_publish(router, body.replace(b"%s", topic.encode()), token)
            assert status == 400, (body, answer)
            assert answer["error"] == "wamp.error.invalid_argument" and says in answer["message"], answer
            assert "Send null, or the value as a string." in answer["message"], answer
        status, answer = post_publish(router, json.dumps({"topic": topic, "args": ["marker"]}).encode(), token)
        assert status == 200, answer
        assert subscriber.next_event() == ["marker"]  # the first event it gets: nothing refused arrived
    finally:
        stderr = subscriber.stop()
    assert "JSON decoding error" not in stderr, stderr


# -- a transport that also speaks CBOR ------------------------------------------------------------


@pytest.fixture(scope="module")
def cbor_router(tmp_path_factory):
    """The scale-out deployment with the public WebSocket path offering CBOR besides JSON (the
    shipped configs offer JSON only): a float NaN enters as valid CBOR, crosses the proxies' CBOR
    link to the router worker and back, and meets JSON subscribers at a proxy worker."""

    def offer_cbor(config):
        config["workers"][0]["transports"][0]["paths"]["ws"]["serializers"] = ["json", "cbor"]

    node = RouterProcess(tmp_path_factory.mktemp("cbor"), env={"JWT_SECRET": TEST_SECRET}, edit_config=offer_cbor,
                         proxies=2).start()  # fmt: skip
    yield node
    node.stop()


def cbor_frames(ws: RawWebSocket, deadline: float):
    while (frame := ws.next_frame(deadline)) is not None:
        opcode, payload = frame
        if opcode == PING:
            ws.send(payload, PONG)
        elif opcode == BINARY:
            yield cbor2.loads(payload)
        elif opcode == CLOSE:
            return


def cbor_client(router, token: str) -> RawWebSocket:
    ws = RawWebSocket(router.port, protocols=("wamp.2.cbor",))
    assert ws.headers.get("sec-websocket-protocol") == "wamp.2.cbor", ws.headers
    ws.send(cbor2.dumps([HELLO, "realm1", {"roles": {"publisher": {}, "subscriber": {}}, "authmethods": ["ticket"]}]),
            BINARY)  # fmt: skip
    for answer in cbor_frames(ws, time.monotonic() + 10):
        if answer[0] == CHALLENGE:
            ws.send(cbor2.dumps([AUTHENTICATE, token, {}]), BINARY)
        else:
            assert answer[0] == WELCOME, answer
            return ws
    raise AssertionError("the CBOR client's connection closed during its login")


def test_a_float_nan_from_a_cbor_client_reaches_cbor_subscribers_and_leaves_json_subscribers_working(
    cbor_router, tmp_path
):
    router = cbor_router
    topic = f"app.chat.{unique('finite')}"
    node = NodeSubscriber(tmp_path, router.url, mint(unique("bob")), topic)
    carol = cbor_client(router, mint(unique("carol")))
    carol.send(cbor2.dumps([32, 1, {}, topic]), BINARY)  # SUBSCRIBE
    assert next(cbor_frames(carol, time.monotonic() + 10))[0] == 33  # SUBSCRIBED
    dave = cbor_client(router, mint(unique("dave")))
    offset = router.log_size()
    try:
        dave.send(cbor2.dumps([PUBLISH, 1, {"acknowledge": True}, topic, ["x", float("nan")]]), BINARY)
        assert next(cbor_frames(dave, time.monotonic() + 10))[:2] == [PUBLISHED, 1]  # valid CBOR: taken
        event = next(cbor_frames(carol, time.monotonic() + 10))
        assert event[0] == EVENT and event[4][0] == "x" and event[4][1] != event[4][1]  # NaN, as sent

        dave.send(cbor2.dumps([PUBLISH, 2, {"acknowledge": True}, topic, ["marker"]]), BINARY)
        assert next(cbor_frames(dave, time.monotonic() + 10))[:2] == [PUBLISHED, 2]
        assert node.next_event() == ["marker"]  # the NaN event was not sent to it; it still decodes
        router.wait_for_log("EVENT not sent to JSON peers: it carries NaN or Infinity", after=offset)
    finally:
        carol.close()
        dave.close()
        stderr = node.stop()
    assert "JSON decoding error" not in stderr, stderr


# -- lone surrogates -------------------------------------------------------------------------------


def surrogate_reason(escape: str) -> str:
    """The close reason of a message carrying the lone surrogate `escape` (e.g. "\\ud800")."""
    return (
        f"WAMP Protocol Error (invalid serialization of WAMP message: LoneSurrogate {escape} is not valid Unicode: "
        "send valid UTF-8)"
    )


def lone_surrogate_messages(topic: str) -> list[tuple[str, bytes, str]]:
    """(what, the message as sent, the surrogate the reason names): the JSON escape of half a
    UTF-16 pair, which Python's parser reads into a string no UTF-8 writer takes back."""
    t = topic.encode()
    return [
        ("PUBLISH args", b'[16, 1, {"acknowledge": true}, "%s", ["a\\ud800b"]]' % t, "\\ud800"),
        ("PUBLISH kwargs, a key deep in them", b'[16, 1, {"acknowledge": true}, "%s", [], {"a": [{"\\udfff": 1}]}]' % t,
         "\\udfff"),
        ("PUBLISH URI", b'[16, 1, {"acknowledge": true}, "%s\\ud800", []]' % t, "\\ud800"),
        ("SUBSCRIBE URI", b'[32, 1, {}, "nope.x\\ud800"]', "\\ud800"),
        ("CALL URI", b'[48, 1, {}, "nope.x\\uD800", []]', "\\ud800"),
        ("CALL args, a low half after a valid pair", b'[48, 1, {}, "authenticator.refresh", ["\\ud83d\\ude00\\udc00"]]',
         "\\udc00"),
    ]  # fmt: skip


def hello_with_realm(realm: bytes, method: str) -> bytes:
    return b'[1, "%s", {"roles": {"subscriber": {}, "publisher": {}}, "authmethods": ["%s"]}]' % (
        realm,
        method.encode(),
    )


@pytest.mark.parametrize("sender", ["authenticated", "anonymous"])
def test_a_lone_surrogate_closes_its_sender_with_the_reason_no_traceback_and_node_subscribers_keep_receiving(
    router, tmp_path, sender
):
    topic = f"app.chat.{unique('surrogate')}"
    subscriber = NodeSubscriber(tmp_path, router.url, mint(unique("bob")), topic)
    offset = router.log_size()
    try:
        for method in ("ticket", "anonymous"):  # the realm of a HELLO, before any login
            ws = RawWebSocket(router.port)
            ws.send(hello_with_realm(b"realm1\\ud800", method))
            code, reason, received = close_of(ws)
            assert (code, reason, received) == (PROTOCOL_ERROR, surrogate_reason("\\ud800"), []), (method, reason)

        for what, hostile, escape in lone_surrogate_messages(topic):
            ws = RawWebSocket(router.port)
            ws.welcome(mint(unique("alice")) if sender == "authenticated" else None)
            ws.send(hostile)
            code, reason, received = close_of(ws)
            assert (code, reason) == (PROTOCOL_ERROR, surrogate_reason(escape)), (what, code, reason)
            assert received == [], (what, received)  # no PUBLISHED, no RESULT, no ERROR: nothing of it was taken

        marker_sender = unique("marker")
        publisher = RawWebSocket(router.port)
        publisher.join(mint(marker_sender))
        published(publisher, topic, 2, "marker")
        publisher.close()
        # The next event is the marker: nothing hostile arrived, and the subscriber still decodes.
        assert subscriber.next_event() == ["marker"]
        router.wait_for_log(f"authentication accepted: authid={marker_sender}", after=offset)  # the log is this far
    finally:
        stderr = subscriber.stop()
    written = router.log()[offset:]
    assert "Traceback" not in written and "Unhandled error" not in written, written[-3000:]
    assert "JSON decoding error" not in stderr, stderr


def test_post_publish_with_a_lone_surrogate_is_400_saying_why(router, tmp_path):
    topic = f"app.public.{unique('surrogate')}"
    token = mint(unique("backend"), ["backend"])
    subscriber = NodeSubscriber(tmp_path, router.url, None, topic)
    offset = router.log_size()
    try:
        hostile = [
            (b'{"topic": "%s", "args": ["\\ud800"]}', "\\ud800"),
            (b'{"topic": "%s\\ud800"}', "\\ud800"),  # the topic
            (b'{"topic": "%s", "kwargs": {"\\udfff": 1}}', "\\udfff"),  # a key
            (b'{"topic": "%s", "args": ["\xed\xa0\x80"]}', "\\ud800"),  # its bytes, which json.loads lets through
            (b'[{"topic": "%s", "args": ["ok"]}, {"topic": "%s", "args": ["\\udbff"]}]', "\\udbff"),  # a batch, whole
        ]  # fmt: skip
        for body, escape in hostile:
            status, answer = post_publish(router, body.replace(b"%s", topic.encode()), token)
            assert (status, answer) == (400, {
                "error": "wamp.error.invalid_argument",
                "message": f"The body carries a lone surrogate {escape}, which is not valid Unicode: send valid UTF-8 "
                           "(a character outside the BMP as its pair of escapes, or as UTF-8).",
            }), body  # fmt: skip
        for encoding in ("utf-16", "utf-32"):  # json.loads reads them; the surrogate scan could not
            body = f'{{"topic": "{topic}", "args": ["\\ud800"]}}'.encode(encoding)  # the escape, as text
            assert post_publish(router, body, token) == (400, {
                "error": "wamp.error.invalid_argument",
                "message": "The body is not JSON: send a JSON object (or a list of them) as UTF-8.",
            }), encoding  # fmt: skip
        status, answer = post_publish(
            router, json.dumps({"topic": topic, "args": ["marker \U0001f600"]}).encode(), token
        )
        assert status == 200, answer
        assert subscriber.next_event() == ["marker \U0001f600"]  # the first event it gets: nothing refused arrived
    finally:
        stderr = subscriber.stop()
    written = router.log()[offset:]
    assert "Traceback" not in written and "Unhandled error" not in written, written[-3000:]
    assert "JSON decoding error" not in stderr, stderr
