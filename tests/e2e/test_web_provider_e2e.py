"""The `web` metric provider against a real HTTP server on 127.0.0.1: what reaches the
endpoint (method, body, headers), and every way of not getting a number, each an error
naming the metric and the endpoint and never quoting a header read from a Secret, even
when the endpoint echoes it back."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chatops.api.analysis import Metric
from chatops.api.common import SecretKeyRef
from chatops.errors import WebMetricUnavailable
from chatops.metrics.analysis import QueryContext
from chatops.metrics.web import WebProvider, request_for

pytestmark = pytest.mark.e2e

TOKEN = "tok-5e1f0a9b8c7d"
CONTEXT = QueryContext("chat-api-green", "prod", "api", "green", "7f3a")
Reply = Callable[[BaseHTTPRequestHandler, bytes], None]


def _send(code: int, body: bytes) -> Reply:
    def reply(handler: BaseHTTPRequestHandler, received: bytes) -> None:
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return reply


def _echo(handler: BaseHTTPRequestHandler, received: bytes) -> None:
    """What was asked, as JSON: the value at $.data.errorRate is the Authorization."""
    body = json.dumps({
        "data": {"errorRate": handler.headers.get("Authorization")},
        "method": handler.command,
        "path": handler.path,
        "body": received.decode(),
        "headers": {k.lower(): v for k, v in handler.headers.items()},
    }).encode()
    _send(200, body)(handler, received)


def _garbled(handler: BaseHTTPRequestHandler, received: bytes) -> None:
    handler.wfile.write(b"SPAM\r\n\r\n")


class Server:
    def __init__(self) -> None:
        self.reply: Reply = _echo
        self.seen: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                received = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.seen.append({"method": self.command, "body": received.decode(),
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
                server.reply(self, received)

            do_GET = do_POST = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    found = Server()
    thread = threading.Thread(target=found.http.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.http.shutdown()
        found.http.server_close()


def _metric(url: str, **web: Any) -> Metric:
    return Metric.model_validate({"name": "slo", "max": 1, "web": {
        "url": url + "/slo/{{service}}", "jsonPath": "{$.data.errorRate}", "timeoutSeconds": 2,
        "headers": [{"name": "Authorization",
                     "valueFrom": {"secretKeyRef": {"name": "slo", "key": "token"}}}],
        **web,
    }})


def _read(ref: SecretKeyRef) -> str:
    assert (ref.name, ref.key) == ("slo", "token")
    return f"Bearer {TOKEN}\n"


def test_a_post_carries_its_rendered_body_and_the_secrets_header(server: Server) -> None:
    server.reply = _send(200, b'{"data": {"errorRate": "0.004"}}')
    metric = _metric(server.url, method="POST", body='{"service": "{{service}}"}')
    assert WebProvider(_read).value(request_for(metric, CONTEXT, 0)) == 0.004
    (asked,) = server.seen
    assert asked["method"] == "POST" and asked["body"] == '{"service": "chat-api-green"}'
    assert asked["headers"]["authorization"] == f"Bearer {TOKEN}"  # the file's newline dropped
    assert asked["headers"]["content-type"] == "application/json"


def test_a_header_of_the_spec_overrides_the_content_type(server: Server) -> None:
    server.reply = _send(200, b'{"data": {"errorRate": 0}}')
    metric = _metric(server.url, method="POST", body="q={{service}}", headers=[
        {"name": "content-type", "value": "application/x-www-form-urlencoded"}])
    assert WebProvider(_read).value(request_for(metric, CONTEXT, 0)) == 0
    assert server.seen[0]["headers"]["content-type"] == "application/x-www-form-urlencoded"


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (_echo, "jsonPath {$.data.errorRate} matched the string '***', not a number"),
        (_send(404, b"{}"), "HTTP 404"),
        (_send(503, f'{{"error": "bad token Bearer {TOKEN}"}}'.encode()), "HTTP 503"),
        (_send(200, b"<html>maintenance</html>"), "the answer is not JSON"),
        (_send(200, b'{"data": {"errorRate": [1, 2]}}'),
         "jsonPath {$.data.errorRate} matched an array of 2, not a number"),
        (_send(200, b" " * (1 << 20) + b"1"), "the answer is larger than 1048576 bytes"),
        (_garbled, "BadStatusLine"),
    ],
)
def test_anything_but_one_number_is_an_error_that_never_quotes_the_secret(
    server: Server, reply: Reply, problem: str
) -> None:
    server.reply = reply
    request = request_for(_metric(server.url), CONTEXT, 0)
    with pytest.raises(WebMetricUnavailable) as raised:
        WebProvider(_read).value(request)
    assert str(raised.value) == f"web metric slo: GET {server.url}/slo/chat-api-green: {problem}"
    assert TOKEN not in str(raised.value)


def test_an_endpoint_that_is_not_there_is_an_error_saying_so() -> None:
    url = f"http://127.0.0.1:{_refused_port()}"
    with pytest.raises(WebMetricUnavailable, match=r"Connection refused$"):
        WebProvider(_read).value(request_for(_metric(url), CONTEXT, 0))
