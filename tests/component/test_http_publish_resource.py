"""The /publish resource's own failure paths, with Twisted's request double (no router)."""

import io
import json

from twisted.web.test.requesthelper import DummyRequest

from authenticator.endpoints import publish as http_publish
from authenticator.endpoints.publish import PublishResource


def post(resource, body=b'{"topic": "app.public.news"}'):
    request = DummyRequest([b""])
    request.method = b"POST"
    request.content = io.BytesIO(body)
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer eyJ.a.b"])
    answer = resource.render(request)
    return request.responseCode, json.loads(answer), request


class Exploding:
    def handle(self, *args):
        raise RuntimeError("boom with eyJ.secret.token inside")


def test_an_unexpected_failure_is_a_500_json_answer_without_its_words(monkeypatch):
    monkeypatch.setitem(http_publish.SERVICES, "realm1", Exploding())
    status, body, request = post(PublishResource("realm1", 65536, 100))
    assert status == 500 and body["error"] == "authenticator.error.internal_error"
    assert "boom" not in json.dumps(body) and "eyJ" not in json.dumps(body)
    assert request.responseHeaders.getRawHeaders(b"cache-control") == [b"no-store"]


def test_before_the_component_joined_the_answer_is_503_retry(monkeypatch):
    monkeypatch.delitem(http_publish.SERVICES, "realm9", raising=False)
    status, body, request = post(PublishResource("realm9", 65536, 100))
    assert status == 503 and "not ready" in body["message"]
    assert request.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]
