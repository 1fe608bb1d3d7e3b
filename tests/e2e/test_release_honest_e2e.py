"""What a ChatRelease's status promises, against the real cluster and the real kubectl:
conditions one can wait on (issue 8 case 4), manual requests never lost (case 6), a
refused action said in status and one Event (case 16), status claiming only what the
cluster shows (case 17), a look that raises said in status (case 18), and Events posted
before the status that reports them (case 23)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

import releases as rel
from support import GROUP, VERSION, kubectl, wait_for

pytestmark = pytest.mark.e2e
PLURAL = "chatreleases"
ROUTE = {"gatewayAPI": {"httpRoute": "chat"}}


def _chatops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatops.cli", *args], capture_output=True, text=True, timeout=120
    )


def _events(api: client.ApiClient, namespace: str) -> list[client.CoreV1Event]:
    items: list[client.CoreV1Event] = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector="involvedObject.kind=ChatRelease")
        .items
    )
    return items


def _reasons(api: client.ApiClient, namespace: str) -> list[str]:
    return [e.reason for e in _events(api, namespace)]


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == kind), {}
    )
    return found


def _first_release(custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any]) -> None:
    rel.traffic(namespace, "chat", "blue", "green")
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)


def _reconciled_false(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (
            (c := _condition(rel.get(custom, namespace, "chat"), "Reconciled")).get("status")
            == "False"
            and c
        ),
        timeout=90,
        what="condition Reconciled=False",
    )
    return found


def _kubectl_wait(namespace: str, condition: str) -> None:
    """The real `kubectl wait --for=condition=…` on the release, as a pipeline runs it."""
    waited = kubectl(
        "wait", f"--for=condition={condition}", "crel/chat", "-n", namespace,
        "--timeout=120s", check=False,
    )
    assert waited.returncode == 0, waited.stderr


# -- case 4 ------------------------------------------------------------------------------


def test_kubectl_wait_for_complete_returns_after_a_rollback_and_ready_only_when_live(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 4: `kubectl wait --for=condition=Complete` returns after a rollback (reason
    RolledBack), while `Ready` stays False; after a promotion `Ready` is True. Each
    condition names its generation, so a wait right after an edit waits for the new one."""
    rel.http_route(api, namespace)
    _first_release(custom, namespace, rel.release_spec("1.0", rel.canary(pause="3s"), ROUTE))

    rel.play(namespace, "1.1", errorRate=0.05)
    rel.set_version(custom, namespace, "chat", "1.1")
    _kubectl_wait(namespace, "Complete")
    body = rel.get(custom, namespace, "chat")
    generation = body["metadata"]["generation"]
    assert body["status"]["phase"] == "RolledBack"
    complete, ready = _condition(body, "Complete"), _condition(body, "Ready")
    assert (complete["status"], complete["reason"]) == ("True", "RolledBack")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack")
    assert complete["observedGeneration"] == ready["observedGeneration"] == generation

    rel.set_version(custom, namespace, "chat", "1.2")  # 1.2 is fine
    _kubectl_wait(namespace, "Ready")
    status = rel.status(custom, namespace, "chat")
    assert status["phase"] in ("Promoting", "Succeeded")
    assert status["stableVersion"] == "chat-api:1.2,chat-web:1.2"
    assert rel.route_weights(api, namespace)["chat-api-green"] == 100


# -- case 6 ------------------------------------------------------------------------------


def test_two_promotes_in_a_row_advance_two_steps(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 6: two `chatops promote` in quick succession on a paused canary are two
    requests: each has its own value, the second is written once the first is taken, and
    the operator removes a request only if it still has the value it acted on."""
    steps: list[dict[str, Any]] = []
    for weight in (10, 25, 50):
        steps += [{"setWeight": weight}, {"pause": {}}]
    steps.append({"setWeight": 100})
    rel.http_route(api, namespace)
    _first_release(custom, namespace, rel.release_spec("1.0", {"canary": {"steps": steps}}, ROUTE))
    rel.set_version(custom, namespace, "chat", "1.1")
    rel.wait_phase(custom, namespace, "chat", "Paused", timeout=90)
    assert rel.status(custom, namespace, "chat")["canaryWeight"] == 10

    for _ in range(2):
        done = _chatops("promote", "chat", "-n", namespace)
        assert done.returncode == 0, done.stderr
        assert re.search(r"chatops\.dev/promote=step@\S+\.\d{6}Z", done.stdout), done.stdout

    wait_for(
        lambda: (s := rel.status(custom, namespace, "chat")).get("canaryWeight") == 50
        and s.get("phase") == "Paused",
        timeout=90,
        what="the canary paused at 50 % after two promotes",
    )
    annotations = rel.get(custom, namespace, "chat")["metadata"].get("annotations") or {}
    assert "chatops.dev/promote" not in annotations
    assert rel.route_weights(api, namespace)["chat-api-green"] == 50


def test_a_request_that_changed_since_it_was_read_is_not_removed(
    crds: None, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 6, the compare-and-remove itself against the real API server: removing the
    value that was read fails when a newer request replaced it, and the newer survives."""
    from chatops.adapters.kube import Cluster

    rel.create(custom, namespace, "chat", rel.release_spec("1.0", rel.canary(), ROUTE))
    rel.annotate(custom, namespace, "chat", "chatops.dev/promote", "step@2026-12-01T00:00:02Z")
    cluster = Cluster(api)
    read = "step@2026-12-01T00:00:01Z"  # what a look read before the newer request came
    assert not cluster.remove_annotation_if(PLURAL, namespace, "chat", "chatops.dev/promote", read)
    kept = rel.get(custom, namespace, "chat")["metadata"]["annotations"]["chatops.dev/promote"]
    assert kept == "step@2026-12-01T00:00:02Z"
    assert cluster.remove_annotation_if(PLURAL, namespace, "chat", "chatops.dev/promote", kept)
    assert "chatops.dev/promote" not in (
        rel.get(custom, namespace, "chat")["metadata"].get("annotations") or {}
    )


# -- case 16 -----------------------------------------------------------------------------


def _broken(spec: dict[str, Any], how: str) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for c in spec["components"]:
        template = c["template"]
        if how == "label":
            template["metadata"] = {"labels": {"bad key!": "x"}}
        elif how == "cpu":
            template["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    if how == "surge":
        spec["strategy"] = {"rolling": {"maxSurge": 0, "maxUnavailable": 0,
                                        "analysisWindow": "2s"}}
    return spec


ANSWER = {
    "label": "Invalid value: \"bad key!\"",
    "cpu": "quantities must match",
    "surge": "may not be 0 when `maxSurge` is 0",
}


@pytest.mark.parametrize("how", ["label", "cpu", "surge"])
def test_a_refused_deployment_is_said_in_status_and_one_event(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi,
    how: str,
) -> None:
    """Case 16: a Deployment the API server refuses (an invalid label key, a CPU limit of
    `lots`, `maxSurge: 0` with `maxUnavailable: 0`) is named in `Reconciled=False` with
    the API server's message, in the status message, and in one Warning Event, not
    every retry; or, where the schema or the operator's own checks catch it first, in
    `Accepted=False` naming the field."""
    spec = _broken(rel.release_spec("1.0", {"blueGreen": {"postPromotionWindow": "2s"}}), how)
    try:
        rel.create(custom, namespace, "chat", spec)
    except client.ApiException as err:  # the schema refused it: said with the field
        assert err.status == 422 and "spec." in err.body
        return
    body = wait_for(
        lambda: (
            (b := rel.get(custom, namespace, "chat"))
            and (
                _condition(b, "Reconciled").get("status") == "False"
                or _condition(b, "Accepted").get("status") == "False"
            )
            and b
        ),
        timeout=90,
        what="the refusal in a condition",
    )
    if _condition(body, "Accepted").get("status") == "False":
        assert "spec.components" in _condition(body, "Accepted")["message"]
        return
    problem = _condition(body, "Reconciled")
    assert problem["reason"] == "ActionFailed"
    assert f"Deployment {namespace}/chat-" in problem["message"]
    assert ANSWER[how] in problem["message"]  # the API server's own words
    message = body["status"]["message"]
    assert message.startswith("cannot carry out the release: Deployment")
    assert "waiting" not in message
    # a retry comes (the log says it) and the problem is not posted again
    wait_for(
        lambda: operator.read_text().count(f"{namespace}/chat: Deployment {namespace}/chat-") >= 2,
        timeout=60,
        what="a second attempt at the refused Deployment",
    )
    assert _reasons(api, namespace).count("ActionFailed") == 1
    assert rel.get(custom, namespace, "chat")["status"]["phase"] != "Succeeded"


# -- case 17 -----------------------------------------------------------------------------


def _decided(
    custom: client.CustomObjectsApi, namespace: str, intent: str, claim: Any
) -> dict[str, Any]:
    """The status once the release got as far as `intent` (in its Progressing condition:
    the message says the failure) or, where status lies, as far as `claim(status)`."""
    found: dict[str, Any] = wait_for(
        lambda: (
            (b := rel.get(custom, namespace, "chat"))
            and (
                intent in _condition(b, "Progressing").get("message", "")
                or claim(b.get("status") or {})
            )
            and b["status"]
        ),
        timeout=150,
        what=f"the release at {intent!r}",
    )
    return found


def test_a_first_release_on_a_missing_route_is_not_succeeded(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 17: with `httpRoute: no-such-route`, a first release whose Deployments are
    Available is still not Succeeded nor Ready: no traffic reaches it."""
    rel.traffic(namespace, "chat", "blue")
    spec = rel.release_spec("1.0", rel.canary(), {"gatewayAPI": {"httpRoute": "no-such-route"}})
    rel.create(custom, namespace, "chat", spec)
    status = _decided(
        custom, namespace, "waiting for the router", lambda s: s.get("phase") == "Succeeded"
    )
    assert status["phase"] == "Progressing" and status.get("stableRevision") is None
    assert rel.available(api, namespace, "chat-api-blue")  # traffic is what it waits for
    body = rel.get(custom, namespace, "chat")
    assert _condition(body, "Ready")["status"] == "False"
    problem = _reconciled_false(custom, namespace)
    assert "no-such-route" in problem["message"] and "HTTPRoute" in problem["message"]


def test_a_switch_without_a_route_never_shows_the_new_version_as_stable(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 17: after a version bump whose traffic cannot move (the HTTPRoute is gone),
    a blue-green release records no switch and no promotion: canaryWeight stays below
    100 and the stable version stays the old one."""
    rel.http_route(api, namespace)
    strategy = {"blueGreen": {"postPromotionWindow": "2s", "scaleDownDelaySeconds": 2}}
    _first_release(custom, namespace, rel.release_spec("1.0", strategy, ROUTE))
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "chat"
    )
    rel.set_version(custom, namespace, "chat", "1.1")
    status = _decided(
        custom, namespace, "switching traffic to green",
        lambda s: s.get("canaryWeight") == 100 or s.get("phase") == "Promoting",
    )
    assert (status.get("canaryWeight") or 0) < 100
    assert status["stableVersion"] == "chat-api:1.0,chat-web:1.0"
    assert status["phase"] == "Progressing" and status["activeColor"] == "blue"
    assert "TrafficSwitched" not in _reasons(api, namespace)
    assert "HTTPRoute" in _reconciled_false(custom, namespace)["message"]


def test_no_weight_is_reported_on_a_route_without_the_color_backend_refs(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 17: on an HTTPRoute whose rules lost their green backendRefs, `canaryWeight`
    stays 0 (nothing was applied) and the condition names the rule and what to add."""
    rel.http_route(api, namespace)
    _first_release(custom, namespace, rel.release_spec("1.0", rel.canary(pause="2s"), ROUTE))
    routes = client.CustomObjectsApi(api)
    route = routes.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "chat"
    )
    for rule in route["spec"]["rules"]:
        rule["backendRefs"] = [r for r in rule["backendRefs"] if r["name"].endswith("-blue")]
    routes.replace_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "chat", route
    )
    rel.set_version(custom, namespace, "chat", "1.1")
    status = _decided(custom, namespace, "setting 10%", lambda s: s.get("canaryWeight") == 10)
    assert status.get("canaryWeight") == 0 and status.get("currentStep") == 0
    assert "WeightSet" not in _reasons(api, namespace)
    problem = _reconciled_false(custom, namespace)
    assert "chat-api-green" in problem["message"] and "backendRef" in problem["message"]


# -- case 18 -----------------------------------------------------------------------------


def test_a_look_that_raises_is_said_in_status_once_and_backs_off(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 18: a look that raises what no branch expects (here a status the operator
    cannot read, as a hand edit or a restore of an older backup can leave: the API server
    accepts any string as a time) is said in `Reconciled=False` (reason LookFailed) and
    one Warning Event, retried after a growing delay, and recovers once it is fixed."""
    steps = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
    rel.http_route(api, namespace)
    spec = rel.release_spec("1.0", {"canary": {"steps": steps}}, ROUTE)
    spec.pop("analysis")  # no measurements: the status in the pause stays as it is
    _first_release(custom, namespace, spec)
    rel.set_version(custom, namespace, "chat", "1.1")
    wait_for(
        lambda: "until" in rel.status(custom, namespace, "chat").get("message", ""),
        timeout=90,
        what="the canary in its pause",
    )

    def broken() -> dict[str, Any] | None:
        """The status broken, again if a look in flight wrote over the first edit."""
        body = rel.get(custom, namespace, "chat")
        found = _condition(body, "Reconciled")
        if found.get("status") == "False":
            return found
        if body["status"].get("stepStartedAt") != "yesterday":
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, "chat",
                {"status": {"stepStartedAt": "yesterday", "analysisStartedAt": "yesterday"}},
            )
            rel.annotate(custom, namespace, "chat", "poke", body["metadata"]["resourceVersion"])
        return None

    problem = wait_for(broken, timeout=90, what="the unreadable status reported")
    assert problem["reason"] == "LookFailed" and "unexpected" in problem["message"]
    assert "yesterday" in rel.status(custom, namespace, "chat")["message"]
    wait_for(
        lambda: len(re.findall(rf"{namespace}/chat: look failed", operator.read_text())) >= 3,
        timeout=60,
        what="three failed looks",
    )
    delays = [float(d) for d in re.findall(
        rf"{namespace}/chat: look failed .*; next try in (\d+) s", operator.read_text()
    )]
    assert delays[:3] == [5.0, 10.0, 20.0]
    assert _reasons(api, namespace).count("LookFailed") == 1

    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "chat",
        {"status": {"stepStartedAt": "2026-12-01T00:00:00Z",
                    "analysisStartedAt": "2026-12-01T00:00:00Z"}},
    )
    rel.annotate(custom, namespace, "chat", "poke", "2")
    wait_for(
        lambda: _condition(rel.get(custom, namespace, "chat"), "Reconciled").get("status")
        == "True",
        timeout=60,
        what="Reconciled=True once the status is readable again",
    )


# -- case 23 -----------------------------------------------------------------------------


def test_the_deadline_event_exists_before_the_phase_that_reports_it(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 23: the operator posted the `ProgressDeadlineExceeded` Event after the status
    (kopf queues Events and posts them later), so a reader seeing RolledBack could miss
    it. Now each Event is created, synchronously, before the status that reports it: in
    the API server's (one etcd's) revision order, the Event comes before the first
    version of the ChatRelease whose phase is RolledBack."""
    rel.http_route(api, namespace)
    spec = rel.release_spec("1.0", rel.canary(), ROUTE, progressDeadlineSeconds=8)
    _first_release(custom, namespace, spec)
    start = rel.get(custom, namespace, "chat")["metadata"]["resourceVersion"]
    rel.set_version(custom, namespace, "chat", "never-ready")
    seen: int | None = None
    for event in watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
        field_selector="metadata.name=chat", resource_version=start, timeout_seconds=90,
    ):
        if (event["object"].get("status") or {}).get("phase") == "RolledBack":
            seen = int(event["object"]["metadata"]["resourceVersion"])
            break
    assert seen is not None, "never RolledBack"
    posted = [
        int(e.metadata.resource_version)
        for e in _events(api, namespace)
        if e.reason == "ProgressDeadlineExceeded"
    ]
    assert posted and min(posted) < seen, (posted, seen)
    assert len(posted) == 1  # one Event, not one per look
