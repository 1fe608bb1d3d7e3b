"""Liveness means working: `/healthz` answers 200 only while the API server answers the
operator's credentials (and, for the leader, while its event loop turns), and the
reachability check tells a refused credential from an unreachable server — asked of a
real HTTP server playing the API server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from chatops import telemetry
from chatops.adapters import reachability

STALE = telemetry.Health.STALE


def health(
    state: str, answered: float | None, beat: float = 0.0, refused: bool = False
) -> telemetry.Health:
    """A Health whose API server last answered `answered` seconds ago (None: never) and
    whose loop last beat `beat` seconds ago."""
    h = telemetry.Health()
    h.state = state
    now = time.monotonic()
    if answered is not None:
        h.answered()
        h.last_answer = now - answered
    if refused:
        h.not_answered("the API server answered 401 Unauthorized")
    h.last_beat = now - beat
    return h


@pytest.mark.parametrize(
    ("made", "alive", "ready"),
    [
        (lambda: health("starting", None), False, False),
        (lambda: health("starting", 0), True, False),
        (lambda: health("standby", 0), True, True),
        (lambda: health("leading", 0), True, True),
        (lambda: health("standby", None), False, False),
        (lambda: health("leading", 1, refused=True), False, False),
        (lambda: health("standby", 1, refused=True), False, False),
        (lambda: health("leading", 2 * STALE), False, False),
        (lambda: health("leading", 0, beat=2 * STALE), False, False),
        (lambda: health("standby", 0, beat=2 * STALE), True, True),
    ],
    ids=[
        "started, API server not asked yet",
        "answered, not yet leading or standing by",
        "standby, answered",
        "leader, answered, loop turning",
        "standby whose API server never answered",
        "leader refused by the API server",
        "standby refused by the API server",
        "leader whose check has not answered for long",
        "leader whose loop is hung",
        "standby: no loop to turn yet",
    ],
)
def test_alive_means_working(
    made: Callable[[], telemetry.Health], alive: bool, ready: bool
) -> None:
    h = made()  # now: a Health made at collection would be stale by the time it runs
    assert (h.alive(), h.ready()) == (alive, ready)
    assert h.describe().startswith(h.state)
    assert (h.describe() == f"{h.state}\n") == alive


def test_a_refusal_says_why_in_the_probe_body() -> None:
    h = health("leading", 1, refused=True)
    assert h.describe() == "leading: the API server answered 401 Unauthorized\n"
    h.answered()
    assert h.describe() == "leading\n"


class _ApiServer(BaseHTTPRequestHandler):
    token = "good"

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {self.token}"
        body = json.dumps({"major": "1", "minor": "32", "gitVersion": "v1.32.13"} if ok else {
            "kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401,
        }).encode()
        self.send_response(200 if ok and self.path == "/version/" else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _client(host: str, token: str) -> client.ApiClient:
    configuration = client.Configuration(host=host)
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    return client.ApiClient(configuration)


def test_the_check_passes_when_the_api_server_answers_the_credentials(api_server: str) -> None:
    assert reachability.check(_client(api_server, "good")) is None


def test_the_check_fails_on_a_refused_token_without_showing_it(api_server: str) -> None:
    trouble = reachability.check(_client(api_server, "s3cr3t-token"))
    assert trouble == "the API server answered 401 Unauthorized"


def test_the_check_fails_when_nothing_listens(api_server: str) -> None:
    server = _client("http://127.0.0.1:9", "good")  # discard: nothing listens
    trouble = reachability.check(server)
    assert trouble is not None and trouble.startswith("the API server is unreachable")


def test_the_watch_tells_health_and_takes_new_credentials_after_a_failure(
    api_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused client is dropped: the next check loads the credentials again, as a
    restarted replica would, and health turns back to working."""
    tokens = iter(["bad", "good"])
    h = telemetry.Health()
    h.leading()
    stop = threading.Event()
    made: list[str] = []

    def connect() -> client.ApiClient:
        made.append(next(tokens, "good"))
        return _client(api_server, made[-1])

    monkeypatch.setattr(reachability, "EVERY", 0.05)
    thread = reachability.watch(h, connect, stop)
    try:
        deadline = time.monotonic() + 30
        while not (made[:2] == ["bad", "good"] and h.alive()) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert made[:2] == ["bad", "good"] and h.alive(), (made, h.describe())
    assert len(made) == 2, "a client that works is kept, not made again every check"
