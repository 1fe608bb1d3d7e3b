"""RPO of the continuous oplog archive under a steady write rate (issue 9).

    source .chatops-env/env && PATH=$CHATOPS_TOOLS_PATH:$PATH \
        .venv/bin/python bench/pitr_bench.py --rate 200 --seconds 120

A real operator (`chatops run` for one namespace) archives a ChatBackup with
`pointInTime: {enabled: true, sliceLength: 10m}` (flushInterval at its default, 5s)
while a writer inserts chat messages at `--rate` per second, recording when each was
acknowledged. Every 0.5 s the benchmark looks at S3 as a restore would (complete slices
only: manifest and object) and takes the newest message in them: the seconds since that
message was acknowledged are what a loss of the database at that instant would lose
(RPO, "seconds not yet archived"). Prints p50/p95/max over the run after a warm-up of one
flush interval, and the slices written.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import bson
from kubernetes import client, config
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    env = os.environ
    subprocess.run(["kubectl", "apply", "--server-side", "--force-conflicts", "-f",
                    str(ROOT / "crds")], check=True, capture_output=True)
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-pitr-{uuid.uuid4().hex[:6]}"
    database = f"bench_pitr_{uuid.uuid4().hex[:6]}"
    bucket = f"bench-pitr-{uuid.uuid4().hex[:6]}"
    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"])
    s3.create_bucket(Bucket=bucket)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    secrets = {"mongo": {"uri": env["MONGODB_URI"]},
               "s3": {"AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "testing"),
                      "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "testing")}}
    for name, data in secrets.items():
        while True:
            try:
                core.create_namespaced_secret(ns, client.V1Secret(
                    metadata=client.V1ObjectMeta(name=name),
                    data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()}))
                break
            except client.ApiException:  # the namespace's ServiceAccount is not there yet
                time.sleep(0.5)
    mongo: MongoClient[dict[str, Any]] = MongoClient(env["MONGODB_URI"])
    mongo[database]["messages"].insert_one({"_id": 0, "text": "first"})
    log = open(f"/tmp/{ns}-operator.log", "wb")  # noqa: SIM115
    operator = subprocess.Popen(
        [sys.executable, "-m", "chatops.cli", "run", "--namespace", ns, "--metrics-port", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    acked: dict[int, float] = {}
    try:
        custom.create_namespaced_custom_object("chatops.dev", "v1alpha1", ns, "chatbackups", {
            "apiVersion": "chatops.dev/v1alpha1", "kind": "ChatBackup",
            "metadata": {"name": "chat"},
            "spec": {
                "mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database},
                "storage": {"s3": {"bucket": bucket, "prefix": "chat/",
                                   "endpoint": env["S3_ENDPOINT_URL"], "forcePathStyle": True,
                                   "credentialsSecretRef": {"name": "s3"}}},
                "pointInTime": {"enabled": True, "sliceLength": "10m"},
            },
        })
        wait(lambda: (status(custom, ns).get("pointInTime") or {}).get("state") == "Archiving",
             120, "the archive to start")
        stop = threading.Event()

        def write() -> None:
            n, start = 0, time.monotonic()
            coll = MongoClient(env["MONGODB_URI"])[database]["messages"]
            while not stop.is_set():
                n += 1
                coll.insert_one({"_id": n, "text": f"message {n}", "room": n % 20})
                acked[n] = time.time()
                ahead = start + n / args.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        samples, seen, newest = [], set(), 0
        began = time.time()
        while time.time() - began < args.seconds:
            for key in manifests(s3, bucket):
                if key in seen:
                    continue
                seen.add(key)
                manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                body = s3.get_object(Bucket=bucket, Key=manifest["key"])["Body"].read()
                ids = [d["o"].get("_id") for d in bson.decode_all(gzip.decompress(body))
                       if d.get("op") == "i"]
                newest = max([newest, *[i for i in ids if isinstance(i, int)]])
            now = time.time()
            if now - began > 10 and newest in acked:
                samples.append(now - acked[newest])
            time.sleep(0.5)
        stop.set()
        writer.join()
        samples.sort()
        rate = len(acked) / args.seconds
        print(json.dumps({
            "rate_per_s": round(rate, 1), "samples": len(samples),
            "rpo_p50_s": round(statistics.median(samples), 2),
            "rpo_p95_s": round(samples[int(len(samples) * 0.95) - 1], 2),
            "rpo_max_s": round(samples[-1], 2), "slices": len(seen),
        }))
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        core.delete_namespace(ns)
        mongo.drop_database(database)


def manifests(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="chat/pitr/")
    return sorted(o["Key"] for p in pages for o in p.get("Contents", [])
                  if o["Key"].endswith(".manifest.json"))


def status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object("chatops.dev", "v1alpha1", ns, "chatbackups", "chat")
    return dict(obj.get("status") or {})


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    main()
