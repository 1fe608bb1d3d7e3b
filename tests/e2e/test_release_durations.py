"""Issue 8, case 5: durations last at least what the spec says, as the cluster shows
them. A watch on the HTTPRoute and on the old color's Deployment records when each
weight was applied and when the old color was scaled down: every canary pause lasts at
least its `duration` at its weight, and the old color serves at least
`scaleDownDelaySeconds` after it stopped getting new connections. (Times cut to whole
seconds made a 20 s pause last 19.3 s and a 20 s drain 19.9 s.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

import releases as rel
from support import wait_for

pytestmark = pytest.mark.e2e

PAUSE, DRAIN = 4.0, 4


class Recorder:
    """What a watch saw, with the time this process received it (one clock for all)."""

    def __init__(self, list_call: Any, *args: Any, **kwargs: Any) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._stopped = False
        self._watch = watch.Watch()
        first = list_call(*args, **kwargs)
        version = (
            first["metadata"]["resourceVersion"]
            if isinstance(first, dict)
            else first.metadata.resource_version
        )
        self._thread = threading.Thread(
            target=self._run, args=(list_call, args, kwargs, version), daemon=True
        )
        self._thread.start()

    def _run(self, list_call: Any, args: Any, kwargs: Any, version: str) -> None:
        stream = self._watch.stream(
            list_call, *args, resource_version=version, timeout_seconds=300, **kwargs
        )
        try:
            for event in stream:
                obj = event["object"]
                self.seen.append(
                    (time.monotonic(), obj if isinstance(obj, dict) else obj.to_dict())
                )
        except ProtocolError:
            if not self._stopped:
                raise

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()

    def first(self, check: Any) -> float | None:
        return next((t for t, obj in list(self.seen) if check(obj)), None)


def _green_api_weight(route: dict[str, Any]) -> int | None:
    for rule in route["spec"]["rules"]:
        for ref in rule["backendRefs"]:
            if ref["name"] == "chat-api-green":
                return int(ref.get("weight", 1))
    return None


def test_pauses_and_the_drain_last_at_least_what_the_spec_says(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    rel.http_route(api, namespace)
    rel.traffic(namespace, "chat", "blue", "green")
    steps: list[dict[str, Any]] = []
    for weight in (10, 50):
        steps += [{"setWeight": weight}, {"pause": {"duration": f"{PAUSE:g}s"}}]
    strategy = {
        "canary": {
            "steps": [*steps, {"setWeight": 100}],
            "scaleDownDelaySeconds": DRAIN,
        }
    }
    spec = rel.release_spec("1.0", strategy, {"gatewayAPI": {"httpRoute": "chat"}}, health=False)
    # the first round once Prometheus has scraped the new pods: rounds without data
    # (consecutiveErrorLimit) are not what this test is about
    spec["analysis"].update(interval="1s", initialDelay="3s")
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)

    routes = Recorder(
        client.CustomObjectsApi(api).list_namespaced_custom_object,
        "gateway.networking.k8s.io",
        "v1",
        namespace,
        "httproutes",
    )
    deployments = Recorder(
        client.AppsV1Api(api).list_namespaced_deployment,
        namespace,
        field_selector="metadata.name=chat-api-blue",
    )
    try:
        rel.set_version(custom, namespace, "chat", "1.1")
        try:
            wait_for(
                lambda: rel.status(custom, namespace, "chat").get("phase") == "Succeeded"
                and rel.replicas(api, namespace, "blue") == {"api": 0, "web": 0},
                timeout=120,
                interval=0.5,
                what="1.1 promoted and the old color scaled down",
            )
        except AssertionError as err:  # say where the release is
            found = rel.status(custom, namespace, "chat")
            raise AssertionError(f"{err}: {found.get('phase')}: {found.get('message')}; "
                                 f"blue {rel.replicas(api, namespace, 'blue')}; "
                                 f"{found.get('analysis', [])[-3:]}") from None
        wait_for(
            lambda: deployments.first(lambda d: d["spec"]["replicas"] == 0),
            timeout=10,
            what="the watch seeing the scale-down",
        )
    finally:
        routes.stop()
        deployments.stop()

    at = {
        weight: routes.first(lambda r, w=weight: _green_api_weight(r) == w)
        for weight in (10, 50, 100)
    }
    scaled = deployments.first(lambda d: d["spec"]["replicas"] == 0)
    assert None not in at.values() and scaled is not None, (at, scaled)
    assert at[10] is not None and at[50] is not None and at[100] is not None
    took = {
        "pause at 10%": at[50] - at[10],
        "pause at 50%": at[100] - at[50],
        "drain of blue": scaled - at[100],
    }
    promised = {"pause at 10%": PAUSE, "pause at 50%": PAUSE, "drain of blue": DRAIN}
    print("measured from the cluster:", {what: round(s, 3) for what, s in took.items()})
    short = [f"{what}: {s:.3f} s" for what, s in took.items() if s < promised[what]]
    assert short == [], took
