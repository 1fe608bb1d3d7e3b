"""Notifications through the real operator to HTTP receivers this test runs on 127.0.0.1
(the operator runs on the host): a canary release told started, each step and promoted
in order, then rolled back; a Slack-format receiver given Slack's shape; a receiver down,
then answering 500, then back, still told everything while the release went on without
it; a failing backup told to a receiver answering 500 for its first 10 s; a restore told
finished. The receivers' URLs, secrets in their Secret, are in no log, Event or status.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo import MongoClient

import releases as rel
import support
from backups import (
    backup_spec,
    create,
    create_secrets,
    finished_run,
    free_port,
    new_bucket,
    reasons,
    recovery_ended,
    uri_with_password,
)
from support import GROUP, VERSION, wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    """A webhook receiver: each POST recorded (when, in Unix seconds as the payload's
    `time`; the answer given; the JSON body),
    answered `code`; `down()` closes its port (connections refused), `up()` opens it
    again on the same one. Its URL ends in a token that stands for a Slack URL's secret."""

    def __init__(self) -> None:
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.code = 200
        self.requests: list[tuple[float, int, dict[str, Any]]] = []
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{self.token}"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = receiver.code if self.path == f"/hooks/{receiver.token}" else 404
                receiver.requests.append((time.time(), code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[dict[str, Any]]:
        """The bodies it answered 2xx to, each notification once (by id), in order."""
        seen: dict[str, dict[str, Any]] = {}
        for _, code, body in self.requests:
            key = body.get("id") or json.dumps(body, sort_keys=True)
            if 200 <= code < 300:
                seen.setdefault(key, body)
        return list(seen.values())


@pytest.fixture
def receivers() -> Any:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.down()


def _secret(core: client.CoreV1Api, namespace: str, urls: dict[str, str]) -> None:
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "hooks"},
        "stringData": urls,
    })


def _receiver(name: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "urlSecretRef": {"name": "hooks", "key": key}, **extra}


def _assert_no_url(custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
                   log: Path, *tokens: str) -> None:
    """No receiver's URL (its token) in the operator's log, an Event or any status."""
    texts = [log.read_text(errors="replace")]
    for plural in ("chatreleases", "chatbackups", "chatrecoveries"):
        found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        texts.append(json.dumps([item.get("status") for item in found["items"]]))
    texts += [f"{e.reason} {e.message}" for e in core.list_namespaced_event(namespace).items]
    for token in tokens:
        for text in texts:
            assert token not in text
            assert base64.b64encode(token.encode()).decode() not in text


def _of(receiver: Receiver, revision: str) -> list[dict[str, Any]]:
    """What the receiver was told of `revision`, in the order it happened (deliveries
    retried or in parallel may arrive in another)."""
    told = [b for b in receiver.delivered() if b.get("release", {}).get("revision") == revision]
    return sorted(told, key=lambda b: str(b["time"]))


def _release_spec(pause: str, receivers: list[dict[str, Any]]) -> dict[str, Any]:
    return rel.release_spec("1.0", rel.canary(pause=pause), {"gatewayAPI": {"httpRoute": "chat"}},
                            notifications=receivers)


def test_a_canary_release_is_told_in_order_and_a_slack_receiver_gets_slacks_shape(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi,
    core: client.CoreV1Api, receivers: Any,
) -> None:
    hook, chat = receivers(), receivers()
    _secret(core, namespace, {"json": hook.url, "slack": chat.url})
    rel.http_route(api, namespace)
    rel.traffic(namespace, "chat", "blue", "green")
    spec = _release_spec("5s", [_receiver("hook", "json"),
                                _receiver("chat", "slack", format="slack",
                                          on=["Promoted", "RolledBack"])])
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)

    rel.set_version(custom, namespace, "chat", "1.1")
    wait_for(lambda: rel.status(custom, namespace, "chat").get("stableVersion")
             == "chat-api:1.1,chat-web:1.1", timeout=120, what="1.1 promoted")
    revision = rel.status(custom, namespace, "chat")["stableRevision"]
    told = wait_for(lambda: (b := _of(hook, revision)) and b[-1]["kind"] == "Promoted" and b,
                    timeout=60, what="the promotion told")
    assert [b["kind"] for b in told] == ["Started", "Step", "Step", "Step", "Step", "Promoted"]
    steps = [(b["release"]["step"], b["release"]["weight"]) for b in told if b["kind"] == "Step"]
    assert [w for _, w in steps] == [10, 25, 50, 100] and steps == sorted(steps)
    for body in told:
        assert body["apiVersion"] == "chatops.dev/notification/v1" and body["receiver"] == "hook"
        assert body["object"]["kind"] == "ChatRelease" and body["object"]["name"] == "chat"
        assert body["object"]["namespace"] == namespace and body["event"]["message"]
    assert told[-1]["event"]["reason"] == "Promoted"

    # 1.2 fails its analysis: rolled back, and told why, to both receivers
    rel.play(namespace, "1.2", errorRate=0.05)
    rel.set_version(custom, namespace, "chat", "1.2")
    bad = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=120)["abortedRevision"]
    back = wait_for(lambda: [b for b in _of(hook, bad) if b["kind"] == "RolledBack"],
                    timeout=60, what="the rollback told")
    assert back[0]["event"]["reason"] == "AnalysisFailed"
    assert "error-rate" in back[0]["event"]["message"]

    def slack_told() -> list[str]:
        texts = [m["text"] for m in chat.delivered()]
        return texts if any(": rolled back." in t for t in texts) else []

    texts = wait_for(slack_told, timeout=60, what="Slack told of the rollback")
    for message in chat.delivered():
        assert set(message) == {"text", "blocks"}, message
        assert [b["type"] for b in message["blocks"]] == ["section", "context"]
        assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert any(f"ChatRelease {namespace}/chat: promoted." in t for t in texts), texts
    assert any(t.startswith(":warning:") and "error-rate" in t for t in texts), texts
    assert not any(": step." in t or ": started." in t for t in texts)  # only what it hears
    _assert_no_url(custom, core, namespace, operator, hook.token, chat.token)


def test_a_receiver_away_during_a_release_is_told_everything_once_it_is_back(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi,
    core: client.CoreV1Api, receivers: Any,
) -> None:
    hook = receivers()
    _secret(core, namespace, {"json": hook.url})
    rel.http_route(api, namespace)
    rel.traffic(namespace, "chat", "blue", "green")
    rel.create(custom, namespace, "chat", _release_spec("2s", [_receiver("hook", "json")]))
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)

    hook.down()  # connections refused
    away = time.time()
    rel.set_version(custom, namespace, "chat", "1.1")
    wait_for(lambda: (s := rel.status(custom, namespace, "chat")).get("phase") == "Succeeded"
             and s.get("stableVersion") == "chat-api:1.1,chat-web:1.1", timeout=120,
             what="1.1 Succeeded, its receiver away")
    revision = rel.status(custom, namespace, "chat")["stableRevision"]
    assert _of(hook, revision) == []  # the release never waited for it
    hook.code = 500
    hook.up()  # answering, but failing
    wait_for(lambda: any(code == 500 for _, code, _ in hook.requests), timeout=90,
             what="an attempt answered 500")
    hook.code = 200
    back = time.time()
    told = wait_for(lambda: len(b := _of(hook, revision)) >= 6 and b, timeout=180,
                    what="every notification of 1.1 delivered")
    assert [b["kind"] for b in told] == ["Started", "Step", "Step", "Step", "Step", "Promoted"]
    seen = {b["id"]: [(at, code) for at, code, body in hook.requests if body["id"] == b["id"]]
            for b in told}
    late = [max(at for at, code in seen[b["id"]] if code == 200)
            - datetime.datetime.fromisoformat(b["time"]).timestamp() for b in told]
    print(f"receiver away {back - away:.1f} s (refused, then 500): per notification, seconds "
          f"from its Event to its 2xx {[round(t, 1) for t in late]}, attempts the receiver "
          f"saw {[len(seen[b['id']]) for b in told]}")
    exported = support.metrics(operator)
    mine = f'namespace="{namespace}",receiver="hook"'
    assert exported[f"chatops_notification_attempts_failed_total{{{mine}}}"] >= 6
    assert exported[f"chatops_notifications_delivered_total{{{mine}}}"] >= 6
    _assert_no_url(custom, core, namespace, operator, hook.token)


@pytest.mark.mongodb
def test_a_failing_backup_and_a_restore_are_told(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, receivers: Any,
) -> None:
    hook = receivers()
    _secret(core, namespace, {"json": hook.url})
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    mongo_client[database].rooms.insert_many([{"name": f"room-{i}"} for i in range(10)])
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    tell = [_receiver("hook", "json")]

    # a receiver answering 500 for its first 10 s, from the first attempt on
    hook.code = 500
    spec = backup_spec(s3_url, bucket, "gone_database", notifications=tell)
    create(custom, namespace, "chatbackups", "ChatBackup", "broken", spec)
    failing = wait_for(lambda: hook.requests and hook.requests[0][0], timeout=120,
                       what="the first attempt at BackupFailed")
    wait_for(lambda: time.time() >= failing + 10, timeout=30, what="10 s of 500s")
    hook.code = 200
    [failed] = wait_for(lambda: hook.delivered(), timeout=120, what="BackupFailed delivered")
    assert (failed["kind"], failed["event"]["reason"]) == ("Failed", "BackupFailed")
    assert failed["object"] == {**failed["object"], "kind": "ChatBackup", "name": "broken"}
    assert "does not exist" in failed["event"]["message"]
    assert "release" not in failed
    tries = [(at - failing, code) for at, code, _ in hook.requests]
    print(f"BackupFailed through a receiver answering 500 for 10 s: attempts at "
          f"{[f'{t:.1f}s:{c}' for t, c in tries]}")
    assert [c for _, c in tries][-1] == 200 and len(tries) >= 3

    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database, notifications=tell))
    assert finished_run(custom, namespace, "nightly", timeout=120)["result"] == "Succeeded"
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "undo", {
        "source": {"backupRef": {"name": "nightly", "id": "latest"}},
        "mode": "DropDatabase",
        "notifications": tell,
    })
    ended = recovery_ended(custom, namespace, "undo", timeout=180)
    assert ended["phase"] == "Succeeded", ended
    restored = wait_for(lambda: [b for b in hook.delivered()
                                 if b["object"]["kind"] == "ChatRecovery"],
                        timeout=60, what="the restore told")
    assert [(b["kind"], b["event"]["reason"]) for b in restored] == [
        ("Succeeded", "RecoverySucceeded")]
    assert restored[0]["object"]["name"] == "undo"
    # the good backup is not a notification: only Failed, Missed and gaps are
    assert [b["object"]["name"] for b in hook.delivered()] == ["broken", "undo"]
    assert "RecoverySucceeded" in reasons(core, namespace, "undo")
    _assert_no_url(custom, core, namespace, operator, hook.token)


QUICK_RETRY = "0.5,1,3"
"""`--notify-retry`: 3 attempts over 1.5 s, so an outage outlasts the window in seconds
(the default window is about 4 minutes)."""


def test_a_receiver_away_past_the_retry_window_misses_only_what_it_spanned(
    environment: dict[str, str], api: client.ApiClient, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, receivers: Any, tmp_path: Path,
) -> None:
    """Away longer than the retry window: a release and a backup go on without it; every
    notification offered meanwhile is tried 3 times, dropped, counted and told by a
    NotificationFailed Event; none of them arrives later; those of the release after its
    return are delivered."""
    log, port = tmp_path / "operator.log", free_port()
    (tmp_path / "metrics.url").write_text(f"http://127.0.0.1:{port}/metrics")  # support.metrics
    proc = support.start_operator(log, port, [namespace], "--notify-retry", QUICK_RETRY)
    try:
        hook = receivers()
        _secret(core, namespace, {"json": hook.url})
        create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
        rel.http_route(api, namespace)
        rel.traffic(namespace, "chat", "blue", "green")
        tell = [_receiver("hook", "json")]
        rel.create(custom, namespace, "chat", _release_spec("2s", tell))
        rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)

        hook.down()  # connections refused, for longer than the window
        rel.set_version(custom, namespace, "chat", "1.1")
        s3_url = environment["S3_ENDPOINT_URL"]
        create(custom, namespace, "chatbackups", "ChatBackup", "broken",
               backup_spec(s3_url, new_bucket(s3_url), "gone_database", notifications=tell))
        wait_for(lambda: (s := rel.status(custom, namespace, "chat")).get("phase") == "Succeeded"
                 and s.get("stableVersion") == "chat-api:1.1,chat-web:1.1", timeout=120,
                 what="1.1 Succeeded, its receiver away")
        assert finished_run(custom, namespace, "broken", timeout=120)["result"] == "Failed"
        missed = rel.status(custom, namespace, "chat")["stableRevision"]
        # 6 of the release (Started, 4 Steps, Promoted) and the backup's BackupFailed
        mine = f'namespace="{namespace}",receiver="hook"'
        dropped = ('chatops_notifications_dropped_total'  # labels sorted, as support reads
                   f'{{namespace="{namespace}",reason="attempts",receiver="hook"}}')
        wait_for(lambda: support.metrics(log).get(dropped, 0) >= 7, timeout=90,
                 what="the 7 notifications offered while away dropped after their attempts")

        def failed_events() -> list[str]:
            return [e.message for e in core.list_namespaced_event(namespace).items
                    if e.reason == "NotificationFailed"]

        told = wait_for(lambda: len(m := failed_events()) >= 7 and m, timeout=60,
                        what="a NotificationFailed Event for each")
        assert all("not delivered to receiver hook after 3 attempt(s)" in m for m in told), told
        assert "BackupFailed" in reasons(core, namespace, "broken")
        assert "NotificationFailed" in reasons(core, namespace, "broken")
        exported = support.metrics(log)
        assert exported[dropped] == 7
        assert exported[f"chatops_notification_attempts_failed_total{{{mine}}}"] == 21

        hook.up()
        rel.set_version(custom, namespace, "chat", "1.2")
        wait_for(lambda: rel.status(custom, namespace, "chat").get("stableVersion")
                 == "chat-api:1.2,chat-web:1.2", timeout=120, what="1.2 promoted")
        revision = rel.status(custom, namespace, "chat")["stableRevision"]
        back = wait_for(lambda: len(b := _of(hook, revision)) >= 6 and b, timeout=60,
                        what="1.2's notifications delivered")
        assert [b["kind"] for b in back] == ["Started", "Step", "Step", "Step", "Step",
                                             "Promoted"]
        assert _of(hook, missed) == [], "a dropped notification arrived after all"
        assert not [b for b in hook.delivered() if b["object"]["kind"] == "ChatBackup"]
        assert support.metrics(log).get(dropped) == 7  # nothing dropped after the return
        _assert_no_url(custom, core, namespace, log, hook.token)
    finally:
        support.stop_operator(proc)
