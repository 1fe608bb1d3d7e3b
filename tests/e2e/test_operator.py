"""`chatops run`, a real kopf process, sees the resources and writes what it decided."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support import GROUP, VERSION, wait_for
from test_cluster import BACKUP, RELEASE, create

pytestmark = pytest.mark.e2e


def _accepted(custom: client.CustomObjectsApi, namespace: str, plural: str, generation: int) -> Any:
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, "x").get(
        "status", {}
    )
    if status.get("observedGeneration") != generation:
        return None
    return next((c for c in status.get("conditions", []) if c["type"] == "Accepted"), None)


def test_operator_observes_a_new_release_and_its_changes(
    operator: Path, namespace: str, custom: client.CustomObjectsApi
) -> None:
    create(custom, namespace, "ChatRelease", RELEASE)
    accepted = wait_for(
        lambda: _accepted(custom, namespace, "chatreleases", 1),
        timeout=60,
        what="status.observedGeneration 1 and an Accepted condition",
    )
    assert (accepted["status"], accepted["reason"], accepted["observedGeneration"]) == (
        "True",
        "SpecValid",
        1,
    )

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "chatreleases", "x", {"spec": {"paused": True}}
    )
    again = wait_for(
        lambda: _accepted(custom, namespace, "chatreleases", 2),
        timeout=60,
        what="status.observedGeneration 2",
    )
    assert again["lastTransitionTime"] == accepted["lastTransitionTime"]


def test_operator_refuses_what_the_schema_cannot_know(
    operator: Path, namespace: str, custom: client.CustomObjectsApi
) -> None:
    create(custom, namespace, "ChatBackup", {**BACKUP, "timeZone": "Mars/Olympus_Mons"})
    accepted = wait_for(
        lambda: _accepted(custom, namespace, "chatbackups", 1),
        timeout=60,
        what="an Accepted condition on the ChatBackup",
    )
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.timeZone" in accepted["message"] and "Mars/Olympus_Mons" in accepted["message"]


def test_operator_refuses_a_release_query_with_an_unknown_placeholder(
    operator: Path, namespace: str, custom: client.CustomObjectsApi
) -> None:
    metrics = [{"name": "errors", "query": 'up{pod="{{pod}}"}', "max": 1}]
    create(custom, namespace, "ChatRelease", {**RELEASE, "analysis": {"metrics": metrics}})
    accepted = wait_for(
        lambda: _accepted(custom, namespace, "chatreleases", 1),
        timeout=60,
        what="an Accepted condition on the ChatRelease",
    )
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.analysis.metrics[0].query: unknown placeholder {{pod}}" in accepted["message"]
    apps = client.AppsV1Api(custom.api_client)
    assert apps.list_namespaced_deployment(namespace).items == []  # nothing was acted on
