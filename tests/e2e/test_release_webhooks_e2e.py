"""Release gates as webhooks against the real cluster (issue 12, part 2): a receiver the
test runs answers as each test says; a real operator calls it at the documented moments,
holds or rolls back by what it answered, and resumes after a kill without calling a
passed gate again."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import releases as rel
import support
from support import wait_for

pytestmark = pytest.mark.e2e
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "env"))
import localenv  # noqa: E402

ROUTING = {"gatewayAPI": {"httpRoute": "chat"}}


class Receiver:
    """An HTTP endpoint per path: answers `codes[path]` (200 unless set), after
    `delays[path]` seconds; records every call's path, JSON body and time."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    receiver.calls.append((self.path, body, time.monotonic()))
                time.sleep(receiver.delays.get(self.path, 0))
                try:
                    self.send_response(receiver.codes.get(self.path, 200))
                    self.end_headers()
                except OSError:
                    pass  # the caller gave up waiting (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body, _ in self.calls if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()


def _hooks(url: str, failure_limit: int = 100, timeout: int = 5) -> list[dict[str, Any]]:
    return [
        {"name": "load-test", "type": "pre-rollout", "url": f"{url}/pre",
         "failureLimit": failure_limit, "timeoutSeconds": timeout,
         "metadata": {"suite": "smoke"}},
        {"name": "approve", "type": "confirm-promotion", "url": f"{url}/confirm"},
        {"name": "page", "type": "rollback", "url": f"{url}/rollback"},
    ]


def _first_release(custom: client.CustomObjectsApi, api: client.ApiClient, namespace: str,
                   hooks: list[dict[str, Any]]) -> None:
    rel.http_route(api, namespace)
    rel.traffic(namespace, "chat", "blue", "green")
    rel.create(custom, namespace, "chat",
               rel.release_spec("1.0", rel.canary(pause="3s"), ROUTING, webhooks=hooks))
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)


def _green(api: client.ApiClient, namespace: str) -> int:
    weights = rel.route_weights(api, namespace)
    assert weights["chat-api-green"] == weights["chat-web-green"]
    return weights["chat-api-green"]


def test_gates_hold_traffic_then_promotion_and_survive_an_operator_kill(
    crds: None, namespace: str, api: client.ApiClient, custom: client.CustomObjectsApi,
    receiver: Receiver, tmp_path: Path,
) -> None:
    log, port = tmp_path / "operator.log", localenv.free_port()
    proc = support.start_operator(log, port, [namespace])
    try:
        _first_release(custom, api, namespace, _hooks(receiver.url))
        assert receiver.calls == [], "a first release has nothing to gate"
        receiver.codes.update({"/pre": 503, "/confirm": 403})
        rel.set_version(custom, namespace, "chat", "1.1")

        wait_for(lambda: len(receiver.bodies("/pre")) >= 3, timeout=90,
                 what="the pre-rollout webhook called again after failing")
        held = rel.status(custom, namespace, "chat")
        assert "waiting for pre-rollout webhooks: load-test: HTTP 503" in held["message"]
        assert _green(api, namespace) == 0, "traffic moved before pre-rollout passed"
        (pre,) = [c for c in held["webhooks"] if c["name"] == "load-test"]
        assert pre["failures"] >= 2 and not pre["passed"]
        sent = receiver.bodies("/pre")[0]
        assert {k: sent[k] for k in ("apiVersion", "type", "webhook", "release", "namespace",
                                     "revision", "version", "metadata")} == {
            "apiVersion": "chatops.dev/webhook/v1", "type": "pre-rollout",
            "webhook": "load-test", "release": "chat", "namespace": namespace,
            "revision": held["canaryRevision"], "version": "chat-api:1.1,chat-web:1.1",
            "metadata": {"suite": "smoke"},
        }

        receiver.codes["/pre"] = 200
        paused = wait_for(
            lambda: "confirm-promotion" in ((s := rel.status(custom, namespace, "chat"))
                                            .get("message") or "") and s,
            timeout=120, interval=0.5, what="the release held for confirm-promotion")
        assert paused["phase"] == "Paused" and _green(api, namespace) == 50
        pre_calls = len(receiver.bodies("/pre"))

        # killed while held: the new operator neither calls the passed gate again nor
        # moves traffic before the confirmation
        proc.kill()
        proc.wait()
        proc = support.start_operator(log, port, [namespace])
        wait_for(lambda: len(receiver.bodies("/confirm")) >= 3, timeout=90,
                 what="confirm-promotion called again by the restarted operator")
        assert _green(api, namespace) == 50
        assert rel.status(custom, namespace, "chat")["stableVersion"] == "chat-api:1.0,chat-web:1.0"

        receiver.codes["/confirm"] = 200
        done = wait_for(
            lambda: (s := rel.status(custom, namespace, "chat")).get("stableVersion")
            == "chat-api:1.1,chat-web:1.1" and s,
            timeout=90, what="the promotion once confirmed")
        assert len(receiver.bodies("/pre")) == pre_calls, "a passed gate was called again"
        confirm = receiver.bodies("/confirm")[-1]
        assert (confirm["type"], confirm["weight"]) == ("confirm-promotion", 50)
        assert receiver.bodies("/rollback") == []
        assert done["history"][-1]["result"] == "Succeeded"
    finally:
        support.stop_operator(proc)


def test_a_pre_rollout_webhook_that_times_out_rolls_back_and_calls_rollback_once(
    operator: Path, namespace: str, api: client.ApiClient, custom: client.CustomObjectsApi,
    receiver: Receiver,
) -> None:
    _first_release(custom, api, namespace, _hooks(receiver.url, failure_limit=1, timeout=1))
    receiver.delays["/pre"] = 3  # longer than its timeoutSeconds
    rel.set_version(custom, namespace, "chat", "1.1")
    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=120)
    assert "pre-rollout webhook load-test failed 2 times: no answer within 1 s" in done["message"]
    assert len(receiver.bodies("/pre")) == 2
    assert rel.route_weights(api, namespace) == {
        "chat-api-blue": 100, "chat-api-green": 0, "chat-web-blue": 100, "chat-web-green": 0,
    }
    wait_for(lambda: receiver.bodies("/rollback"), timeout=60, what="the rollback webhook")
    (rollback,) = receiver.bodies("/rollback")
    assert (rollback["type"], rollback["revision"]) == ("rollback", done["abortedRevision"])
    assert "pre-rollout webhook load-test failed" in rollback["message"]
    wait_for(
        lambda: any(c["name"] == "page" and c["passed"]
                    for c in rel.status(custom, namespace, "chat").get("webhooks", [])),
        timeout=30, what="the rollback webhook's answer in status")
    assert len(receiver.bodies("/rollback")) == 1
    assert receiver.bodies("/confirm") == []
