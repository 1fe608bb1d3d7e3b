"""The data-side parts of the environment answer like the real thing: FerretDB speaks
the MongoDB wire protocol (to pymongo and to mongodump), the S3 server takes multipart
uploads, and Prometheus scrapes the chat app's pods as the simulator serves them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import boto3
import pymongo
import pytest
from kubernetes import client
from prometheus_api_client import PrometheusConnect

import chatapp_client as app
from chatops.api.analysis import DEFAULT_METRICS
from support import wait_for

pytestmark = pytest.mark.e2e


def test_pymongo_writes_and_reads_ferretdb(environment: dict[str, str]) -> None:
    db = pymongo.MongoClient(environment["MONGODB_URI"])[f"chat_{uuid.uuid4().hex[:8]}"]
    try:
        db.users.create_index("username", unique=True)
        db.users.insert_many([{"username": f"user{i}", "rooms": [i % 3]} for i in range(100)])
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            db.users.insert_one({"username": "user7"})
        assert db.users.count_documents({"rooms": 1}) == 33
        assert db.users.find_one({"username": "user42"})["rooms"] == [0]
        assert any(
            ix["key"] == {"username": 1} and ix.get("unique") for ix in db.users.list_indexes()
        )
    finally:
        db.client.drop_database(db.name)


def test_mongodump_dumps_from_ferretdb(environment: dict[str, str], tmp_path: Path) -> None:
    client = pymongo.MongoClient(environment["MONGODB_URI"])
    name = f"dump_{uuid.uuid4().hex[:8]}"
    client[name].messages.insert_many([{"n": i, "text": "hello"} for i in range(500)])
    try:
        subprocess.run(
            [
                "mongodump",
                f"--uri={environment['MONGODB_URI']}",
                f"--db={name}",
                f"--out={tmp_path}",
                "--numParallelCollections=1",
            ],
            check=True,
            capture_output=True,
        )
    finally:
        client.drop_database(name)
    assert (tmp_path / name / "messages.bson").stat().st_size > 500 * 20
    metadata = json.loads((tmp_path / name / "messages.metadata.json").read_text())
    assert metadata["collectionName"] == "messages"


def test_boto3_multipart_upload_reads_back(environment: dict[str, str]) -> None:
    s3 = boto3.client("s3", endpoint_url=environment["S3_ENDPOINT_URL"])
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024), os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="backup.tar.gz")
    etags = [
        s3.upload_part(
            Bucket=bucket, Key="backup.tar.gz", UploadId=upload["UploadId"], PartNumber=n, Body=data
        )["ETag"]
        for n, data in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="backup.tar.gz",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]},
    )
    body = s3.get_object(Bucket=bucket, Key="backup.tar.gz")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts)).digest()
    assert s3.head_object(Bucket=bucket, Key="backup.tar.gz")["ContentLength"] == len(body)


def test_prometheus_sees_what_the_versions_pods_do(
    environment: dict[str, str], api: client.ApiClient, namespace: str
) -> None:
    app.behave(namespace, "chat-api:2.0", errorRate=0.05, latency=0.3, wsSuccess=0.9)
    green = app.deploy(api, namespace, "chat-api:2.0", "green")
    blue = app.deploy(api, namespace, "chat-api:1.0", "blue")
    app.chatapp("PUT", f"/traffic/{namespace}/{green}", {"rps": 50, "wsRate": 25, "wsHold": 1})
    app.traffic(namespace, blue, rps=50)
    prometheus = PrometheusConnect(url=environment["PROMETHEUS_URL"], disable_ssl=True)
    queries = {m.name: m.query for m in DEFAULT_METRICS}

    def value(metric: str, service: str) -> float | None:
        query = (
            queries[metric]
            .replace("{{namespace}}", namespace)
            .replace("{{service}}", service)
            .replace("{{revision}}", app.REVISION)
        )
        result = prometheus.custom_query(query)
        return float(result[0]["value"][1]) if result else None

    def increase(series: str) -> float:
        selector = f'namespace="{namespace}",service="{green}"'
        found = prometheus.custom_query(f"sum(increase({series}{{{selector}}}[1m]))")
        return float(found[0]["value"][1]) if found else 0.0

    wait_for(
        lambda: increase("websocket_connections_total") >= 200,
        timeout=90,
        what="200 WebSocket attempts on green in Prometheus' window",
    )
    requests, attempts = increase("http_requests_total"), increase("websocket_connections_total")

    def noise(share: float, n: float) -> float:  # 4 sigma of a share of n outcomes
        return 4 * (share * (1 - share) / n) ** 0.5

    assert abs(value("error-rate", green) - 0.05) <= noise(0.05, requests)
    assert value("error-rate", blue) == 0
    assert 0.25 < value("latency-p95", green) <= 0.5
    # Blue plays 5 ms; its histogram times real requests in one Python process on a
    # shared machine, so its p95 is the machine's too; it stays far below green's 300 ms.
    assert value("latency-p95", blue) < 0.25
    assert abs(value("websocket-success", green) - 0.9) <= noise(0.9, attempts)
