"""Helpers of the ChatBackup / ChatRecovery e2e tests: Secrets with real-looking
credentials, the resources as a user writes them, waiting on their status, and the
checks that no credential leaked."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import socket
import struct
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import boto3
from kubernetes import client

from localenv import free_port
from support import GROUP, VERSION, PrivateServer, wait_for

PASSWORD = "Chat-Pa55w0rd-must-not-leak"
S3_SECRET = "S3-s3cret-key-must-not-leak"
S3_KEY_ID = "AKIACHATOPSE2E"


def uri_with_password(uri: str, password: str = PASSWORD) -> str:
    """The server's URI with a user and password (FerretDB on SQLite accepts PLAIN and
    ignores the password, so the credential travels the whole way without being needed)."""
    base = uri.rstrip("/").removeprefix("mongodb://")
    return f"mongodb://chat:{password}@{base}/?authSource=admin&authMechanism=PLAIN"


def create_secrets(core: client.CoreV1Api, namespace: str, mongo_uri: str) -> None:
    """`mongo` (key `uri`) and `s3` (the AWS key pair), as a user creates them."""
    for name, data in (
        ("mongo", {"uri": mongo_uri}),
        ("s3", {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}),
    ):
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=encoded)
        )


def set_secret(core: client.CoreV1Api, namespace: str, name: str, key: str, value: str) -> None:
    core.patch_namespaced_secret(
        name, namespace, {"data": {key: base64.b64encode(value.encode()).decode()}}
    )


def s3_spec(endpoint: str, bucket: str, prefix: str = "chat/") -> dict[str, Any]:
    return {
        "bucket": bucket,
        "prefix": prefix,
        "endpoint": endpoint,
        "forcePathStyle": True,
        "credentialsSecretRef": {"name": "s3"},
    }


def backup_spec(endpoint: str, bucket: str, database: str, **extra: Any) -> dict[str, Any]:
    return {
        "mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database},
        "storage": {"s3": s3_spec(endpoint, bucket)},
        **extra,
    }


def new_bucket(endpoint: str) -> str:
    name = f"chatops-e2e-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str, prefix: str = "chat/") -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def create(
    custom: client.CustomObjectsApi, namespace: str, plural: str, kind: str, name: str,
    spec: dict[str, Any],
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name},
        "spec": spec,
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def status(custom: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> Any:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return obj.get("status") or {}


def backup_now(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    """What `chatops backup-now` does: the annotation, with the time as its value."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat()
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "chatbackups", name,
        {"metadata": {"annotations": {"chatops.dev/backup-now": stamp}}},
    )


def finished_run(
    custom: client.CustomObjectsApi, namespace: str, name: str, after: str = "",
    timeout: float = 90,
) -> dict[str, Any]:
    """The lastBackup once a run with an id later than `after` has ended."""

    def done() -> Any:
        last = status(custom, namespace, "chatbackups", name).get("lastBackup") or {}
        if last.get("id", "") > after and last.get("result") in ("Succeeded", "Failed"):
            return last
        return None

    found: dict[str, Any] = wait_for(done, timeout=timeout, interval=0.2, what=f"a run of {name}")
    return found


def run_once(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    """Ask for a run and wait for its end."""
    last = status(custom, namespace, "chatbackups", name).get("lastBackup") or {}
    backup_now(custom, namespace, name)
    return finished_run(custom, namespace, name, after=last.get("id", ""))


def recovery_ended(
    custom: client.CustomObjectsApi, namespace: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    def done() -> Any:
        found = status(custom, namespace, "chatrecoveries", name)
        return found if found.get("phase") in ("Succeeded", "Failed") else None

    ended: dict[str, Any] = wait_for(done, timeout=timeout, interval=0.3, what=f"{name} to end")
    return ended


def steps(recovery: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in recovery["steps"]}


def events(core: client.CoreV1Api, namespace: str) -> list[client.CoreV1Event]:
    return list(core.list_namespaced_event(namespace).items)


def reasons(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    return [e.reason for e in events(core, namespace) if e.involved_object.name == name]


def assert_no_secrets(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, log: Path
) -> None:
    """Neither the MongoDB password nor the S3 secret key is in any status, Event or the
    operator's log."""
    texts = [log.read_text(errors="replace")]
    for plural in ("chatbackups", "chatrecoveries"):
        found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        texts.append(json.dumps([item.get("status") for item in found["items"]]))
    texts += [f"{e.reason} {e.message}" for e in events(core, namespace)]
    for text in texts:
        assert PASSWORD not in text and S3_SECRET not in text
        assert base64.b64encode(PASSWORD.encode()).decode() not in text


def deployment(apps: client.AppsV1Api, namespace: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "api", "image": "chat-api:1",
                             "ports": [{"containerPort": 8080}]}
                        ]
                    },
                },
            },
        },
    )


def available(apps: client.AppsV1Api, namespace: str, name: str) -> tuple[int, int]:
    d = apps.read_namespaced_deployment(name, namespace)
    return d.spec.replicas or 0, d.status.available_replicas or 0


class PrivateFerretDB(PrivateServer):
    """A FerretDB of the test's own (SQLite in a temporary folder) on a fixed port, to be
    stopped and started again without disturbing anyone else's database."""

    what = "FerretDB"

    def __init__(self) -> None:
        super().__init__()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self._dir = tempfile.mkdtemp(prefix="chatops-e2e-ferretdb-")

    def command(self) -> list[str]:
        return [
            "ferretdb", "--handler=sqlite", f"--sqlite-url=file:{self._dir}/",
            f"--state-dir={self._dir}", f"--listen-addr=127.0.0.1:{self.port}",
            "--debug-addr=-", "--telemetry=disable", "--log-level=error",
        ]


class CuttableProxy:
    """A TCP forwarder to a private S3 server that the test can cut, as if the server
    went away, while the server keeps its state (so a test can look at what the
    operator's run left behind: parts, pending uploads); or hold, so that new connections
    wait (a run stays mid-upload) until `restore`."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._open = threading.Event()
        self._open.set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                conn.close()
                continue
            threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn: socket.socket) -> None:
        self._flowing.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            conn.close()
            return
        with self._lock:
            self._sockets += [conn, upstream]
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Every connection reset, and new ones closed at once."""
        self._open.clear()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):  # linger 0: close with a reset
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
            self._sockets.clear()

    def hold(self) -> None:
        """New connections are accepted but wait, unanswered, until `restore`."""
        self._flowing.clear()

    def restore(self) -> None:
        self._open.set()
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        self._server.close()
        self.cut()


ENV_MESSAGES = int(os.environ.get("CHATOPS_E2E_MESSAGES", "20000"))
"""Messages seeded for the CR round trips: 20,000 keeps the file within minutes on
FerretDB; `CHATOPS_E2E_MESSAGES=200000` runs the issue's full size."""


def drill_after(
    custom: client.CustomObjectsApi, namespace: str, name: str, after: str, timeout: float
) -> dict[str, Any]:
    """status.verification once a drill that started after `after` (a `verify_now` stamp,
    to the microsecond; "" for any) has ended."""

    def ended() -> Any:
        found = status(custom, namespace, "chatbackups", name).get("verification") or {}
        last = found.get("lastDrill") or {}
        started = last.get("startedAt")
        if (started and (not after or _instant(started) > _instant(after))
                and last.get("result") in ("Succeeded", "Failed")):
            return found
        return None

    drilled: dict[str, Any] = wait_for(ended, timeout=timeout, interval=0.5,
                                       what=f"a drill of {name}")
    return drilled


def verify_now(custom: client.CustomObjectsApi, namespace: str, name: str) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "chatbackups", name,
        {"metadata": {"annotations": {"chatops.dev/verify-now": stamp}}},
    )
    return stamp


def _instant(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp)
