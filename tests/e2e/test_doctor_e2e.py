"""`chatops doctor` against the real local environment: a chat app released by the real
operator behind Traefik, a FerretDB and a Redis of the test's own, a real backup in S3.
All green, the doctor exits 0 with every check ok; then one part is broken at a time and
exactly that check fails, named in the table, and comes back when the part does."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo import MongoClient

import dataplane as dp
import localenv
import releases as rel
from backups import (
    PrivateFerretDB,
    backup_spec,
    create,
    create_secrets,
    finished_run,
    free_port,
    new_bucket,
    status,
    uri_with_password,
)
from chatops import clock
from support import PrivateServer, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.mongodb]

TOKEN = "doctor-t0ken-must-not-leak"
"""A token in the API's and the WebSocket's URL query, as a real app may want one."""
ALL_CHECKS = ["api", "mongodb", "redis", "websocket", "backups", "releases"]


class PrivateRedis(PrivateServer):
    """The env's Redis-protocol server (miniredis, env/build.sh) of the test's own, with
    a password, to be stopped without disturbing anyone."""

    what = "Redis"

    def __init__(self) -> None:
        super().__init__()
        self.password = f"redis-{secrets.token_hex(8)}"
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [str(localenv.bin_dir("redis") / "redis-server"), f"--addr=127.0.0.1:{self.port}"]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "REDIS_PASSWORD": self.password}


@pytest.fixture
def ferretdb() -> Iterator[PrivateFerretDB]:
    db = PrivateFerretDB()
    db.start()
    yield db
    db.stop()


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def _prefix_route(api: client.ApiClient, namespace: str) -> str:
    """An HTTPRoute on the env's Gateway sending `/<namespace>/...` to the stable Service
    `chat-api` as `/...` (a prefix per test: the doctor's URLs need no Host header).
    Returns the app's base URL on the host."""
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "doctor"},
        "spec": {
            "parentRefs": [{"name": os.environ["GATEWAY_NAME"],
                            "namespace": os.environ["GATEWAY_NAMESPACE"]}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": f"/{namespace}"}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                "backendRefs": [{"name": f"{dp.RELEASE}-{dp.COMPONENT}", "port": dp.PORT}],
            }],
        },
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", body
    )
    return f"{os.environ['GATEWAY_URL']}/{namespace}"


def _serving(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.headers.get("X-Chat-Pod"))
    except OSError:
        return False


class Doctor:
    """`chatops doctor` as a person and a machine run it, with the app's URLs."""

    def __init__(self, namespace: str, base: str, ferretdb: PrivateFerretDB,
                 redis: PrivateRedis) -> None:
        self.namespace = namespace
        self.flags = {
            "--api-url": f"{base}/api/health?token={TOKEN}",
            "--mongodb-uri": ferretdb.uri,
            "--redis-url": redis.url,
            "--websocket-url": f"{base.replace('http://', 'ws://')}/ws?room=doctor&token={TOKEN}",
            "--timeout": "10",
        }
        self.hidden = [TOKEN, redis.password]

    def run(self, *extra: str, output: str = "json",
            command: tuple[str, ...] = (sys.executable, "-m", "chatops.cli")
            ) -> subprocess.CompletedProcess[str]:
        argv = [*command, "doctor", "-n", self.namespace, "-o", output,
                *(x for pair in self.flags.items() for x in pair), *extra]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        for secret in self.hidden:
            assert secret not in done.stdout + done.stderr, "a secret was printed"
        return done

    def checks(self, *extra: str) -> tuple[int, dict[str, Any]]:
        done = self.run(*extra)
        assert done.stdout, done.stderr
        body = json.loads(done.stdout)
        return done.returncode, body

    def only_failed(self, name: str, *extra: str) -> str:
        """Exactly `name` failed, in the JSON and in the table; its detail."""
        code, body = self.checks(*extra)
        assert code == 1, body
        assert body["failed"] == [name], body
        states = {c["name"]: c["status"] for c in body["checks"]}
        assert states == {c: "failed" if c == name else "ok" for c in ALL_CHECKS}, body
        table = self.run(*extra, output="table")
        assert table.returncode == 1
        lines = table.stdout.splitlines()
        assert lines[-1] == f"1 of 6 checks failed: {name}", table.stdout
        row = next(line for line in lines if line.split()[0] == name)
        assert row.split()[1] == "failed", table.stdout
        detail: str = next(c["detail"] for c in body["checks"] if c["name"] == name)
        return detail

    def all_ok(self, *extra: str) -> dict[str, Any]:
        code, body = self.checks(*extra)
        assert (code, body["ok"], body["failed"]) == (0, True, []), body
        assert {c["name"]: c["status"] for c in body["checks"]} == dict.fromkeys(
            ALL_CHECKS, "ok"), body
        return body


@pytest.mark.namespaces(2)
def test_the_doctor_is_green_on_a_healthy_app_and_names_each_broken_part(
    environment: dict[str, str], operator: Path, api: client.ApiClient, namespaces: list[str],
    custom: client.CustomObjectsApi, core: client.CoreV1Api, database: str,
    mongo_client: MongoClient[dict[str, Any]], ferretdb: PrivateFerretDB,
    redis_server: PrivateRedis,
) -> None:
    namespace, empty = namespaces
    # the app: a first release by the operator, behind the Gateway
    base = _prefix_route(api, namespace)
    strategy = {"blueGreen": {"postPromotionWindow": "2s", "scaleDownDelaySeconds": 2}}
    rel.create(custom, namespace, dp.RELEASE,
               dp.release_spec("1.0", strategy, {"service": {}}, progressDeadlineSeconds=600))
    rel.wait_phase(custom, namespace, dp.RELEASE, "Succeeded", timeout=180)
    wait_for(lambda: _serving(f"{base}/api/health"), timeout=90,
             what="the Gateway carrying the doctor's prefix to the app")
    # a real backup of a database with something in it
    mongo_client[database]["messages"].insert_one({"text": "hello"})
    s3_url = environment["S3_ENDPOINT_URL"]
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, new_bucket(s3_url), database))
    assert finished_run(custom, namespace, "nightly", timeout=180)["result"] == "Succeeded"

    doctor = Doctor(namespace, base, ferretdb, redis_server)
    # All green, as kubectl's plugin too (kubectl finds kubectl-chatops beside python)
    plugin_env = {**os.environ,
                  "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    green = subprocess.run(
        ["kubectl", "chatops", "doctor", "-n", namespace, "-o", "json",
         *(x for pair in doctor.flags.items() for x in pair)],
        capture_output=True, text=True, timeout=120, env=plugin_env,
    )
    assert green.returncode == 0, green.stdout + green.stderr
    assert json.loads(green.stdout)["failed"] == []
    body = doctor.all_ok()
    details = {c["name"]: c["detail"] for c in body["checks"]}
    assert details["websocket"] == "connected; the message sent came back"
    assert details["redis"] == "PONG"
    assert details["releases"] == "1 Succeeded"
    assert details["backups"].startswith(f"{namespace}/nightly: last good backup ")
    assert all(c["durationSeconds"] is not None for c in body["checks"])
    table = doctor.run(output="table")
    assert table.returncode == 0 and table.stdout.splitlines()[-1] == "all 6 checks ok"

    # MongoDB down
    ferretdb.stop()
    assert "MongoDB ping" in doctor.only_failed("mongodb")
    ferretdb.start()
    # Redis down, then a wrong password
    redis_server.stop()
    assert "ConnectionError" in doctor.only_failed("redis")
    redis_server.start()
    wrong = redis_server.url.replace(redis_server.password, "not-the-password")
    assert doctor.only_failed("redis", "--redis-url", wrong) == (
        "Redis refused the credentials (AUTH)")
    # The API's health answers 503 (its version unhealthy), then nobody at the port
    dp.behave(namespace, "chat-api:1.0", healthy=False)
    assert doctor.only_failed("api") == "health URL: HTTP 503"
    dp.behave(namespace, "chat-api:1.0", healthy=True)
    assert doctor.only_failed(
        "api", "--api-url", f"http://127.0.0.1:{free_port()}/api/health"
    ) == "health URL: Connection refused"
    # WebSockets refused at the handshake
    dp.behave(namespace, "chat-api:1.0", wsSuccess=0)
    assert doctor.only_failed("websocket") == "handshake refused: HTTP 503"
    dp.behave(namespace, "chat-api:1.0", wsSuccess=1)
    doctor.all_ok()

    # The last good backup older than the max age; no backup at all elsewhere
    finished = clock.parse(status(custom, namespace, "chatbackups", "nightly")[
        "lastSuccessfulTime"])
    wait_for(lambda: clock.now() - finished > datetime.timedelta(seconds=3),
             what="the backup 3 s old")
    assert "older than 2s" in doctor.only_failed("backups", "--backup-max-age", "2s")
    no_backup = Doctor(empty, base, ferretdb, redis_server)
    assert no_backup.only_failed("backups") == "no ChatBackup: nothing backs MongoDB up"

    # A new version that never becomes ready: stuck, then rolled back
    dp.set_version(custom, namespace, "never-ready")
    rel.wait_phase(custom, namespace, dp.RELEASE, "Progressing")
    wait_for(lambda: doctor.checks("--release-stuck-after", "1s")[1]["failed"] == ["releases"],
             timeout=60, what="the release in progress for over 1 s")
    assert f"{namespace}/{dp.RELEASE} stuck: Progressing for " in doctor.only_failed(
        "releases", "--release-stuck-after", "1s")
    doctor.all_ok()  # in progress for less than the default 2h: not stuck yet
    aborted = subprocess.run([sys.executable, "-m", "chatops.cli", "abort", dp.RELEASE,
                              "-n", namespace], capture_output=True, text=True, timeout=120)
    assert aborted.returncode == 0, aborted.stderr
    rel.wait_phase(custom, namespace, dp.RELEASE, "RolledBack", timeout=120)
    assert doctor.only_failed("releases").startswith(f"{namespace}/{dp.RELEASE} RolledBack")


def test_an_api_server_that_does_not_answer_fails_the_kubernetes_checks_in_time(
    environment: dict[str, str], tmp_path: Path,
) -> None:
    """A kube context whose API server is gone: backups and releases fail within the
    timeout saying so, the other checks still run, and the token is never printed."""
    kubeconfig = tmp_path / "gone.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "me", "user": {"token": TOKEN}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me",
                                                  "namespace": "chat"}}],
    }))
    done = subprocess.run(
        [sys.executable, "-m", "chatops.cli", "doctor", "-o", "json", "--timeout", "3",
         "--redis-url", environment["REDIS_URL"]],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    body = json.loads(done.stdout)
    assert done.returncode == 1 and body["failed"] == ["backups", "releases"], body
    got = {c["name"]: c for c in body["checks"]}
    assert got["backups"]["detail"].startswith("listing chatbackups: the API server did not")
    assert got["backups"]["target"] == "chat"
    assert got["redis"]["status"] == "ok"
    assert TOKEN not in done.stdout + done.stderr
