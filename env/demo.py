"""The demo: the local environment up, the CRDs installed, the operator running, and
the story a newcomer wants to see, as kubectl shows it:

1. a canary of the chat app (API + frontend together) that walks 10 → 25 → 50 → 100 %
   on a Gateway API HTTPRoute and is promoted;
2. a bad canary (the chat app simulator makes the new version's pods fail 5 % of their
   requests) that rolls back by itself, saying which metric and value;
   during both, live users (env/loadgen.py) send requests through Traefik, the env's
   Gateway: one line a second shows the requests each color served and how many failed;
3. a backup of the chat database to S3, and a restore of it.

    python env/demo.py          (make demo)

The operator keeps running in the background (log: .chatops-env/logs/operator.log);
`make env-down` stops it with everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import loadgen
import localenv
from localenv import ROOT, kubectl, log

NAMESPACE = "chat-demo"
RELEASE = "chat"


def sh(*args: str) -> str:
    return kubectl(*args, "-n", NAMESPACE).stdout


def show(title: str, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)} -n {NAMESPACE}    # {title}")
    print(sh(*args).rstrip())


def chatapp(method: str, path: str, body: dict[str, Any]) -> None:
    """One call to the simulator's control API (env/chatapp.py)."""
    request = urllib.request.Request(
        f"{os.environ['CHATAPP_URL']}{path}", method=method, data=json.dumps(body).encode()
    )
    urllib.request.urlopen(request, timeout=5).close()


def play(version: str, **behaviour: Any) -> None:
    """How `version` of every component behaves in its pods (errorRate, latency, ...)."""
    for component in ("api", "web"):
        image = f"registry.example.com/chat-{component}:{version}"
        chatapp("PUT", f"/versions/{image}?namespace={NAMESPACE}", behaviour)


def traffic(color: str) -> None:
    """Steady requests and WebSockets to `color`'s pods of every component."""
    for component in ("api", "web"):
        chatapp("PUT", f"/traffic/{NAMESPACE}/{RELEASE}-{component}-{color}", {"rps": 50})


def status() -> dict[str, Any]:
    found: dict[str, Any] = (
        json.loads(sh("get", "chatrelease", RELEASE, "-o", "json")).get("status") or {}
    )
    return found


def follow(until: Callable[[dict[str, Any]], bool], timeout: float = 180) -> dict[str, Any]:
    """Print a line whenever the phase, step or weight changes, until `until` holds."""
    last = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status()
        line = (s.get("phase"), s.get("currentStep"), s.get("canaryWeight"), s.get("message"))
        if line != last:
            print(f"  phase={line[0]} step={line[1]} weight={line[2]}: {line[3]}")
            last = line
        if until(s):
            return s
        time.sleep(0.5)
    sys.exit("the demo release did not get there in time; see .chatops-env/logs/operator.log")


def release_manifest(version: str) -> dict[str, Any]:
    chat_app, prometheus = os.environ["CHATAPP_URL"], os.environ["PROMETHEUS_URL"]
    window = 'namespace="{{namespace}}",service="{{service}}",revision="{{revision}}"'
    return {
        "apiVersion": "chatops.dev/v1alpha1",
        "kind": "ChatRelease",
        "metadata": {"name": RELEASE, "namespace": NAMESPACE},
        "spec": {
            "components": [
                {
                    "name": name,
                    "replicas": 2,
                    "service": {"port": 8080},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": name,
                                    "image": f"registry.example.com/chat-{name}:{version}",
                                    "ports": [{"containerPort": 8080}],
                                }
                            ]
                        }
                    },
                    "healthCheck": {
                        "url": f"{chat_app}/services/{{{{namespace}}}}/{{{{service}}}}"
                        "/proxy/api/health"
                    },
                }
                for name in ("api", "web")
            ],
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 10},
                        {"pause": {"duration": "5s"}},
                        {"setWeight": 25},
                        {"pause": {"duration": "5s"}},
                        {"setWeight": 50},
                        {"pause": {"duration": "5s"}},
                        {"setWeight": 100},
                    ],
                    "scaleDownDelaySeconds": 5,
                    "abortScaleDownDelaySeconds": 5,
                }
            },
            "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
            "analysis": {
                "interval": "2s",
                "prometheus": {"address": prometheus},
                # the runbook's checks over short windows, so the demo moves in seconds
                "metrics": [
                    {
                        "name": "error-rate",
                        "max": 0.01,
                        "query": f'sum(rate(http_requests_total{{{window},code=~"5.."}}[10s])) / '
                        f"sum(rate(http_requests_total{{{window}}}[10s]))",
                    },
                    {
                        "name": "latency-p95",
                        "max": 0.5,
                        "query": "histogram_quantile(0.95, sum by (le) "
                        f"(rate(http_request_duration_seconds_bucket{{{window}}}[10s])))",
                    },
                ],
            },
        },
    }


def http_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [
                {"name": os.environ["GATEWAY_NAME"], "namespace": os.environ["GATEWAY_NAMESPACE"]}
            ],
            "hostnames": ["chat.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [
                        {"name": f"chat-{c}-blue", "port": 8080, "weight": 100},
                        {"name": f"chat-{c}-green", "port": 8080, "weight": 0},
                    ],
                }
                for c, path in (("api", "/api"), ("web", "/"))
            ],
        },
    }


@contextlib.contextmanager
def live_users(rate: float = 50) -> Iterator[loadgen.Load]:
    """Users on the app through the Gateway while a release moves; a line a second."""
    load = loadgen.Load(os.environ["GATEWAY_URL"], host="chat.example.com", rate=rate)
    stop = threading.Event()

    def report() -> None:
        for line in loadgen.lines(load, float("inf")):
            if stop.is_set():
                return
            print(f"  users: {line}", flush=True)

    with load:
        printer = threading.Thread(target=report, daemon=True)
        printer.start()
        try:
            yield load
        finally:
            stop.set()
    failed = loadgen.failed(load.requests())
    print(f"  users: {len(load.requests())} requests, {len(failed)} failed", flush=True)


def apply(manifest: dict[str, Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(manifest))


def chatops(*args: str) -> str:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "chatops"), *args, "-n", NAMESPACE],
        capture_output=True,
        text=True,
    ).stdout


def seed(uri: str) -> dict[str, int]:
    """A small chat database: users (unique names), rooms, messages with the app's indexes."""
    import datetime

    from pymongo import MongoClient

    with MongoClient(uri) as mongo:
        mongo.drop_database("chat")
        db = mongo["chat"]
        db.users.create_index("username", unique=True)
        db.messages.create_index([("roomId", 1), ("createdAt", -1)])
        db.messages.create_index([("userId", 1), ("createdAt", -1)])
        db.users.insert_many([{"_id": u, "username": f"user{u}"} for u in range(200)])
        db.rooms.insert_many([{"_id": r, "name": f"room-{r}"} for r in range(20)])
        t0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
        db.messages.insert_many(
            [
                {
                    "roomId": i % 20,
                    "userId": i % 200,
                    "text": f"hello #{i}",
                    "createdAt": t0 + datetime.timedelta(seconds=i),
                }
                for i in range(5000)
            ]
        )
        return {c: db[c].count_documents({}) for c in ("users", "rooms", "messages")}


def secret(name: str, data: dict[str, str]) -> None:
    kubectl("delete", "secret", name, "-n", NAMESPACE, "--ignore-not-found")
    kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        NAMESPACE,
        *(f"--from-literal={k}={v}" for k, v in data.items()),
    )


def backup_and_restore() -> None:
    import boto3

    log("3/3 a backup of the chat database to S3, then a restore after an incident")
    counts = seed(os.environ["MONGODB_URI"])
    print(f"  seeded chat: {counts}")
    s3 = os.environ["S3_ENDPOINT_URL"]
    boto3.client("s3", endpoint_url=s3).create_bucket(Bucket="chat-backups")
    secret("chat-mongodb", {"uri": os.environ["MONGODB_URI"].rstrip("/") + "/chat"})
    secret("chat-backup-s3", {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"})
    apply(
        {
            "apiVersion": "chatops.dev/v1alpha1",
            "kind": "ChatBackup",
            "metadata": {"name": "nightly", "namespace": NAMESPACE},
            "spec": {
                "schedule": "0 3 * * *",
                "timeZone": "Europe/Paris",
                "mongodb": {"uriSecretRef": {"name": "chat-mongodb"}, "database": "chat"},
                "storage": {
                    "s3": {
                        "bucket": "chat-backups",
                        "prefix": "mongodb/",
                        "endpoint": s3,
                        "forcePathStyle": True,
                        "credentialsSecretRef": {"name": "chat-backup-s3"},
                    }
                },
                "retention": {"keepLast": 30},
            },
        }
    )
    print("$ chatops backup-now nightly")
    print(chatops("backup-now", "nightly").rstrip())
    wait(
        lambda: (get("chatbackup", "nightly").get("lastBackup") or {}).get("result") == "Succeeded",
        "the backup",
    )
    show("a verified backup in S3", "get", "chatbackup")
    print("$ chatops backups nightly")
    print(chatops("backups", "nightly").rstrip())

    from pymongo import MongoClient

    with MongoClient(os.environ["MONGODB_URI"]) as mongo:
        lost = mongo["chat"].messages.delete_many({"roomId": {"$lt": 10}}).deleted_count
    print(f"\n  the incident: {lost} messages deleted by mistake")
    apply(
        {
            "apiVersion": "chatops.dev/v1alpha1",
            "kind": "ChatRecovery",
            "metadata": {"name": "restore-after-incident", "namespace": NAMESPACE},
            "spec": {
                "source": {"backupRef": {"name": "nightly", "id": "latest"}},
                "mode": "DropDatabase",
                "quiesce": {"deployments": [f"{RELEASE}-api-green"]},
                "postRestore": {
                    "healthChecks": [
                        {
                            "url": f"{os.environ['CHATAPP_URL']}/services/{NAMESPACE}/"
                            f"{RELEASE}-api-green/proxy/api/health"
                        }
                    ]
                },
            },
        }
    )
    last = None

    def progress() -> bool:
        nonlocal last
        rec = get("chatrecovery", "restore-after-incident")
        line = (rec.get("phase"), get("chatrelease", RELEASE).get("phase"))
        if line != last:
            print(f"  recovery phase={line[0]}; the ChatRelease meanwhile: {line[1]}")
            last = line
        return rec.get("phase") in ("Succeeded", "Failed")

    wait(progress, "the restore")
    show("restored, verified, the app back", "get", "chatrecovery")
    rec = get("chatrecovery", "restore-after-incident")
    for step in rec.get("steps", []):
        print(f"  {step['name']:<12} {step['state']:<10} {step.get('message', '')}")
    with MongoClient(os.environ["MONGODB_URI"]) as mongo:
        after = {c: mongo["chat"][c].count_documents({}) for c in ("users", "rooms", "messages")}
    print(f"  chat after the restore: {after} (before the incident: {counts})")


def get(kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(sh("get", kind, name, "-o", "json")).get("status") or {}
    return found


def wait(check: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"{what} did not finish in time; see .chatops-env/logs/operator.log")


def main() -> None:
    env = localenv.up()
    os.environ.update(env)
    log("installing the chatops CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    localenv.wait_established(
        *(f"{plural}.chatops.dev" for plural in ("chatreleases", "chatbackups", "chatrecoveries"))
    )
    localenv.stop("operator")
    log("starting the operator (chatops run; log in .chatops-env/logs/operator.log)")
    localenv.spawn(
        "operator",
        [
            str(ROOT / ".venv" / "bin" / "chatops"),
            "run",
            "--metrics-port",
            str(localenv.free_port()),
        ],
    )
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait")
    kubectl("create", "namespace", NAMESPACE)
    traffic("blue")
    traffic("green")
    apply(http_route())

    log("1/3 the first release of chat 1.0: straight to blue")
    apply(release_manifest("1.0"))
    follow(lambda s: s.get("phase") == "Succeeded")
    log("a canary of chat 1.1: 10 → 25 → 50 → 100 %, every pause checked on Prometheus")
    with live_users():
        apply(release_manifest("1.1"))
        follow(lambda s: s.get("phase") == "Succeeded" and "1.1" in (s.get("stableVersion") or ""))
    show("1.1 is live on green", "get", "chatrelease")

    log("2/3 a bad canary of chat 1.2: the new version fails 5 % of requests")
    play("1.2", errorRate=0.05)
    with live_users():
        apply(release_manifest("1.2"))
        done = follow(lambda s: s.get("phase") == "RolledBack")
    show("rolled back by itself", "get", "chatrelease")
    failed = [m for m in done.get("analysis", []) if m["verdict"] == "Fail"]
    if failed:
        m = failed[-1]
        print(f"  why: {m['metric']} on {m['component']} = {m['value']} ({m['message']})")
    show(
        "what happened, as Events",
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ChatRelease",
        "--sort-by=.lastTimestamp",
    )
    print(
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "chatops"), "status", RELEASE, "-n", NAMESPACE],
            capture_output=True,
            text=True,
        ).stdout
    )

    backup_and_restore()

    show("everything chatops", "get", "crel,cbak,crec")
    print(
        f"\nThe cluster is yours: `source {localenv.ENV_FILE}` then kubectl, or "
        "`make env-down` to stop everything."
    )


if __name__ == "__main__":
    main()
