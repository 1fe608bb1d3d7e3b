"""A ChatRelease canary gated by a `web` metric: a real kopf process asks a real HTTP
endpoint (a server this test runs on 127.0.0.1, which the operator on the host reaches)
for JSON, reads the value at its jsonPath, and promotes or rolls back by it, with an
Authorization header read from a real Secret that the endpoint checks and that shows
nowhere else."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import releases as rel
from support import wait_for

pytestmark = pytest.mark.e2e

ROUTING = {"gatewayAPI": {"httpRoute": "chat"}}


@dataclass
class SLO:
    """What the endpoint answers (the test changes it) and what it was asked."""

    token: str
    mode: str = "value"
    """`value`: 200 with the value; `500`; `slow`: answers after `delay` s; `html`: 200
    with a body that is not JSON."""
    value: float = 0.0
    delay: float = 3.0
    asked: list[str] = field(default_factory=list)
    """The path of every request whose headers were right."""
    refused: list[str] = field(default_factory=list)
    """Requests without the Secret's token or the literal header: answered 401."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def slo() -> Iterator[tuple[SLO, str]]:
    """The endpoint, and its base URL."""
    state = SLO(token=f"tok-{uuid.uuid4().hex}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            good = (self.headers.get("Authorization") == f"Bearer {state.token}"
                    and self.headers.get("X-Team") == "chat")
            with state.lock:
                (state.asked if good else state.refused).append(self.path)
                mode, value, delay = state.mode, state.value, state.delay
            if not good:
                self._answer(401, b'{"error": "unauthorized"}')
            elif mode == "500":
                self._answer(500, b'{"error": "boom"}')
            elif mode == "html":
                self._answer(200, b"<html>maintenance</html>")
            else:
                if mode == "slow":
                    time.sleep(delay)
                self._answer(200, json.dumps({"data": {"errorRate": value}}).encode())

        def _answer(self, code: int, body: bytes) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the operator gave up waiting (the slow mode)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _spec(base: str, **analysis: Any) -> dict[str, Any]:
    """Release 1.0 as a canary of one step at 50 %, gated only by the web metric."""
    spec = rel.release_spec("1.0", rel.canary(pause="2s", weights=(50,)), ROUTING)
    metric = {
        "name": "slo-errors",
        "max": 0.01,
        "web": {
            "url": base + "/slo/{{namespace}}/{{service}}?color={{color}}",
            "jsonPath": "{$.data.errorRate}",
            "timeoutSeconds": 1,
            "headers": [
                {"name": "Authorization",
                 "valueFrom": {"secretKeyRef": {"name": "slo", "key": "token"}}},
                {"name": "X-Team", "value": "chat"},
            ],
        },
    }
    spec["analysis"] = {"interval": "1s", "metrics": [metric], **analysis}
    return spec


def _start(
    api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi,
    namespace: str, state: SLO, spec: dict[str, Any], mode: str = "value",
) -> int:
    """The Secret (`Bearer <token>`, with the newline a file would leave), the route,
    release 1.0 live, then 1.1 started with the endpoint in `mode`; the releases
    finished before 1.1."""
    value = base64.b64encode(f"Bearer {state.token}\n".encode()).decode()
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="slo"), data={"token": value}))
    rel.http_route(api, namespace)
    rel.create(custom, namespace, "chat", spec)
    first = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
    state.mode = mode
    rel.set_version(custom, namespace, "chat", "1.1")
    return len(first.get("history", []))


def _finished(custom: client.CustomObjectsApi, namespace: str, before: int) -> dict[str, Any]:
    """The status once the release after the `before` finished ones has finished."""
    found: dict[str, Any] = wait_for(
        lambda: len((s := rel.status(custom, namespace, "chat")).get("history", [])) > before
        and s.get("phase") in ("RolledBack", "Succeeded", "Failed") and s,
        timeout=150, interval=0.5, what=f"release {before + 1} finished",
    )
    return found


def _events(core: client.CoreV1Api, namespace: str) -> list[str]:
    items = core.list_namespaced_event(namespace).items
    return [f"{e.reason}: {e.message}" for e in items]


def _measured(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rel.status(custom, namespace, "chat").get("analysis", [])
    return found


def test_a_web_metric_promotes_under_its_threshold_and_rolls_back_over_it(
    operator: Path, api: client.ApiClient, core: client.CoreV1Api,
    custom: client.CustomObjectsApi, namespace: str, slo: tuple[SLO, str],
) -> None:
    state, base = slo
    state.value = 0.004
    finished = _start(api, core, custom, namespace, state, _spec(base))
    done = _finished(custom, namespace, finished)
    assert done["phase"] == "Succeeded" and done["activeColor"] == "green"
    assert done["stableVersion"] == "chat-api:1.1,chat-web:1.1"
    passed = [m for m in done["analysis"] if m["verdict"] == "Pass"]
    assert {(m["component"], m["query"], m["value"]) for m in passed} == {
        ("api", f"GET {base}/slo/{namespace}/chat-api-green?color=green", "0.004"),
        ("web", f"GET {base}/slo/{namespace}/chat-web-green?color=green", "0.004"),
    }
    assert passed[0]["message"] == "0.004 within max 0.01"

    state.value = 0.05
    finished = len(done["history"])
    rel.set_version(custom, namespace, "chat", "1.2")
    done = _finished(custom, namespace, finished)
    assert done["phase"] == "RolledBack"
    assert done["stableVersion"] == "chat-api:1.1,chat-web:1.1"
    assert "slo-errors" in done["message"] and "0.05 > max 0.01" in done["message"]
    failed = [m for m in done["analysis"] if m["verdict"] == "Fail"]
    assert failed and failed[-1]["value"] == "0.05"
    assert failed[-1]["query"].startswith(f"GET {base}/slo/{namespace}/chat-") and (
        failed[-1]["query"].endswith("-blue?color=blue"))
    assert any(e.startswith("AnalysisFailed: ") and "slo-errors" in e
               for e in _events(core, namespace))

    # The Secret's header reached the endpoint on every request, and shows nowhere else.
    with state.lock:
        assert state.refused == [] and len(state.asked) >= 4
    shown = json.dumps(rel.get(custom, namespace, "chat"))
    assert state.token not in shown
    assert not [e for e in _events(core, namespace) if state.token in e]
    assert state.token not in operator.read_text()


def _errored_rounds(custom: client.CustomObjectsApi, namespace: str) -> int:
    run = rel.status(custom, namespace, "chat").get("analysisRun") or {}
    return min((m["consecutiveErrors"] for m in run.get("metrics", [])), default=0)


def _held(custom: client.CustomObjectsApi, namespace: str, api: client.ApiClient) -> None:
    held = rel.status(custom, namespace, "chat")
    assert held["canaryWeight"] == 50 and held["phase"] == "Progressing", held.get("message")
    assert rel.route_weights(api, namespace)["chat-api-green"] == 50


def test_an_endpoint_that_times_out_or_fails_holds_the_release_until_it_answers(
    operator: Path, api: client.ApiClient, core: client.CoreV1Api,
    custom: client.CustomObjectsApi, namespace: str, slo: tuple[SLO, str],
) -> None:
    """No answer within timeoutSeconds, an answer that is not JSON, HTTP 500: each an
    Error naming the metric and the endpoint, holding the canary at its step (well past
    its 2 s pause) without promoting it; answered again, it promotes."""
    state, base = slo
    state.value = 0.004
    finished = _start(api, core, custom, namespace, state,
                      _spec(base, consecutiveErrorLimit=1000), "slow")
    endpoint = f"web metric slo-errors: GET {base}/slo/{namespace}/chat-api-green?color=green: "
    for mode, problem in (("slow", "no answer within 1 s"),
                          ("html", "the answer is not JSON"),
                          ("500", "HTTP 500")):
        state.mode = mode
        wait_for(
            lambda problem=problem: any(
                m["message"] == endpoint + problem and m["verdict"] == "Error"
                for m in _measured(custom, namespace)),
            timeout=90, interval=0.3, what=f"an Error measurement saying {problem!r}",
        )
        before = _errored_rounds(custom, namespace)
        wait_for(lambda before=before: _errored_rounds(custom, namespace) >= before + 2,
                 timeout=60, interval=0.3, what="two more rounds measured")
        _held(custom, namespace, api)
    state.mode = "value"
    done = _finished(custom, namespace, finished)
    assert done["phase"] == "Succeeded" and done["activeColor"] == "green"


def test_an_endpoint_failing_past_the_error_limit_rolls_the_release_back(
    operator: Path, api: client.ApiClient, core: client.CoreV1Api,
    custom: client.CustomObjectsApi, namespace: str, slo: tuple[SLO, str],
) -> None:
    state, base = slo
    finished = _start(api, core, custom, namespace, state, _spec(base, consecutiveErrorLimit=2),
                      "500")
    done = _finished(custom, namespace, finished)
    assert done["phase"] == "RolledBack"
    assert "errored 3 time(s) in a row, more than consecutiveErrorLimit 2" in done["message"]
    assert "web metric slo-errors: GET " in done["message"] and "HTTP 500" in done["message"]
    assert done["stableVersion"] == "chat-api:1.0,chat-web:1.0"
