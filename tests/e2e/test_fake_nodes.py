"""The local cluster's fake nodes can fail a version on purpose (env/kwok-stages.yaml):
an image tagged `never-ready` never becomes Ready, and a Job whose pod template says
`chatops.dev/test-outcome: fail` fails. Everything else runs as kwok's defaults make it
run. The release tests build their bad versions on these two behaviours."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from support import wait_for

pytestmark = pytest.mark.e2e


def deployment(name: str, *images: str) -> dict[str, Any]:
    labels = {"app": name}
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
        },
    }


def job(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "smoke", "image": "chat-smoke:1.0"}],
                },
            },
        },
    }


def available(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    status = apps.read_namespaced_deployment(name, namespace).status
    return (
        any(c.type == "Available" and c.status == "True" for c in status.conditions or [])
        and (status.available_replicas or 0) == 2
    )


def job_outcome(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    conditions = batch.read_namespaced_job(name, namespace).status.conditions or []
    return next(
        (c.type for c in conditions if c.type in ("Complete", "Failed") and c.status == "True"),
        None,
    )


def test_never_ready_image_keeps_its_deployment_unavailable(
    api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("good", "chat-api:1.0"))
    # one bad container is enough: the sidecar runs, the pod is never Ready
    apps.create_namespaced_deployment(
        namespace, deployment("bad", "envoy:1.30", "chat-api:never-ready")
    )

    wait_for(lambda: available(apps, namespace, "good"), timeout=60, what="good Available")
    bad_pods = wait_for(
        lambda: [
            p
            for p in core.list_namespaced_pod(namespace, label_selector="app=bad").items
            if p.status.phase == "Running"
        ],
        timeout=60,
        what="bad pods running",
    )
    until = time.monotonic() + 10
    while time.monotonic() < until:
        assert not available(apps, namespace, "bad")
        time.sleep(1)

    assert apps.read_namespaced_deployment("bad", namespace).status.ready_replicas in (None, 0)
    for pod in bad_pods:
        pod = core.read_namespaced_pod(pod.metadata.name, namespace)
        ready = {c.type: c.status for c in pod.status.conditions}
        assert ready["Ready"] == "False"
        by_image = {c.image: c for c in pod.status.container_statuses}
        assert by_image["envoy:1.30"].ready is True
        stuck = by_image["chat-api:never-ready"]
        assert stuck.ready is False
        assert stuck.state.waiting.reason == "CrashLoopBackOff"


def test_job_fails_when_its_pods_are_told_to_and_succeeds_otherwise(
    api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job("smoke-fails", {"chatops.dev/test-outcome": "fail"}))
    batch.create_namespaced_job(namespace, job("smoke-passes", {}))

    assert (
        wait_for(
            lambda: job_outcome(batch, namespace, "smoke-fails"), timeout=60, what="a failed Job"
        )
        == "Failed"
    )
    assert (
        wait_for(
            lambda: job_outcome(batch, namespace, "smoke-passes"), timeout=60, what="a complete Job"
        )
        == "Complete"
    )
    phases = {
        p.metadata.labels["job-name"]: p.status.phase
        for p in core.list_namespaced_pod(namespace).items
    }
    assert phases == {"smoke-fails": "Failed", "smoke-passes": "Succeeded"}
