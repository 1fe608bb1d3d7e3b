"""The demo: the local environment up, the CRDs installed, the operator running, and
the story a newcomer wants to see, as kubectl shows it:

1. a canary of the chat app (API + frontend together) that walks 10 → 25 → 50 → 100 %
   on a Gateway API HTTPRoute and is promoted;
2. a bad canary (the test exporter makes the new version fail 5 % of requests) that
   rolls back by itself, saying which metric and value;
3. a backup of the chat database to S3, and a restore of it.

    python env/demo.py          (make demo)

The operator keeps running in the background (log: .chatops-env/logs/operator.log);
`make env-down` stops it with everything else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import localenv
from localenv import ROOT, kubectl, log

NAMESPACE = "chat-demo"
RELEASE = "chat"


def sh(*args: str) -> str:
    return kubectl(*args, "-n", NAMESPACE).stdout


def show(title: str, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)} -n {NAMESPACE}    # {title}")
    print(sh(*args).rstrip())


def play(color: str, **behaviour: Any) -> None:
    for component in ("api", "web"):
        request = urllib.request.Request(
            f"{os.environ['EXPORTER_URL']}/targets/{NAMESPACE}/{RELEASE}-{component}-{color}",
            method="PUT",
            data=json.dumps({"rps": 50, **behaviour}).encode(),
        )
        urllib.request.urlopen(request, timeout=5).close()


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
    exporter, prometheus = os.environ["EXPORTER_URL"], os.environ["PROMETHEUS_URL"]
    window = 'namespace="{{namespace}}",service="{{service}}"'
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
                                }
                            ]
                        }
                    },
                    "healthCheck": {"url": f"{exporter}/health/{{{{namespace}}}}/{{{{service}}}}"},
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


def apply(manifest: dict[str, Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(manifest))


def main() -> None:
    env = localenv.up()
    os.environ.update(env)
    log("installing the chatops CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in ("chatreleases", "chatbackups", "chatrecoveries"):
        kubectl("wait", "--for=condition=Established", f"crd/{plural}.chatops.dev")
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
    play("blue")
    play("green")
    apply(http_route())

    log("1/3 the first release of chat 1.0: straight to blue")
    apply(release_manifest("1.0"))
    follow(lambda s: s.get("phase") == "Succeeded")
    log("a canary of chat 1.1: 10 → 25 → 50 → 100 %, every pause checked on Prometheus")
    apply(release_manifest("1.1"))
    follow(lambda s: s.get("phase") == "Succeeded" and "1.1" in (s.get("stableVersion") or ""))
    show("1.1 is live on green", "get", "chatrelease")

    log("2/3 a bad canary of chat 1.2: the new version fails 5 % of requests")
    play("blue", errorRate=0.05)  # 1.2 runs on blue, the idle color
    apply(release_manifest("1.2"))
    done = follow(lambda s: s.get("phase") == "RolledBack")
    play("blue")
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

    show("everything chatops", "get", "crel,cbak,crec")
    print(
        f"\nThe cluster is yours: `source {localenv.ENV_FILE}` then kubectl, or "
        "`make env-down` to stop everything."
    )


if __name__ == "__main__":
    main()
