"""ChatRelease against the real cluster: a real kopf process, real Deployments rolled out
on kwok's nodes, real routing objects, real Prometheus scraping the pods the simulator
serves as each version behaves, under steady traffic. Intervals and pauses are seconds
so the suite stays fast."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import releases as rel
import support
from chatops import clock
from support import wait_for

pytestmark = pytest.mark.e2e
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "env"))
import localenv  # noqa: E402


def _events(api: client.ApiClient, namespace: str) -> list[tuple[str, str]]:
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector="involvedObject.kind=ChatRelease")
        .items
    )
    return [
        (e.reason, e.message) for e in sorted(items, key=lambda e: e.metadata.creation_timestamp)
    ]


def _first_release(custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any]) -> None:
    rel.traffic(namespace, "chat", "blue", "green")
    rel.create(custom, namespace, "chat", spec)
    done = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
    assert done["stableVersion"] == "chat-api:1.0,chat-web:1.0" and done["activeColor"] == "blue"


def test_blue_green_on_the_service_router(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    smoke = {
        "template": {"spec": {"containers": [{"name": "smoke", "image": "curl:8"}]}},
        "timeoutSeconds": 60,
    }
    strategy = {"blueGreen": {"postPromotionWindow": "4s", "scaleDownDelaySeconds": 3}}
    _first_release(custom, namespace, rel.release_spec("1.0", strategy, smokeTest=smoke))
    assert {c: rel.selector_color(api, namespace, c) for c in rel.COMPONENTS} == {
        "api": "blue",
        "web": "blue",
    }
    container = (
        client.AppsV1Api(api)
        .read_namespaced_deployment("chat-api-blue", namespace)
        .spec.template.spec.containers[0]
    )
    assert [(e.name, e.value) for e in container.env] == [("CHAT_COMPONENT", "api")]
    assert container.ports[0].container_port == 8080

    for version, old, new in (("1.1", "blue", "green"), ("1.2", "green", "blue")):
        rel.set_version(custom, namespace, "chat", version)

        def switched(new: str = new) -> bool:
            colors = {rel.selector_color(api, namespace, c) for c in rel.COMPONENTS}
            if new in colors:  # traffic may reach the new color only once it is Available
                assert all(rel.available(api, namespace, f"chat-{c}-{new}") for c in rel.COMPONENTS)
            return colors == {new}

        wait_for(switched, timeout=60, interval=0.2, what=f"the stable Services on {new}")
        assert rel.replicas(api, namespace, old) == {"api": 2, "web": 2}  # draining
        done = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=60)
        assert done["activeColor"] == new
        assert done["stableVersion"] == f"chat-api:{version},chat-web:{version}"
        wait_for(
            lambda old=old: rel.replicas(api, namespace, old) == {"api": 0, "web": 0},
            timeout=30,
            what=f"{old} scaled down after scaleDownDelaySeconds",
        )
        job = done["history"][-1]
        assert job["result"] == "Succeeded"

    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    assert len(jobs) == 2 and all(j.status.succeeded == 1 for j in jobs)
    reasons = [r for r, _ in _events(api, namespace)]
    for reason in ("ReleaseStarted", "GatesPassed", "TrafficSwitched", "Promoted"):
        assert reason in reasons


@pytest.mark.parametrize("router", ["gatewayAPI", "nginx"])
def test_healthy_canary_walks_every_weight_then_promotes(
    router: str,
    operator: Path,
    api: client.ApiClient,
    namespace: str,
    custom: client.CustomObjectsApi,
) -> None:
    if router == "gatewayAPI":
        rel.http_route(api, namespace)
        routing: dict[str, Any] = {"gatewayAPI": {"httpRoute": "chat"}}
    else:
        rel.stable_ingress(api, namespace)
        routing = {"nginx": {"ingress": "chat"}}
    _first_release(custom, namespace, rel.release_spec("1.0", rel.canary(), routing))
    rel.set_version(custom, namespace, "chat", "1.1")

    seen: list[int] = []

    def canary_weight() -> int | None:
        if router == "gatewayAPI":
            weights = rel.route_weights(api, namespace)
            assert weights["chat-api-green"] == weights["chat-web-green"]
            assert weights["chat-api-green"] + weights["chat-api-blue"] == 100
            return weights["chat-api-green"]
        return rel.canary_ingress_weight(api, namespace)

    def promoted() -> bool:
        weight = canary_weight()
        if weight and (not seen or seen[-1] != weight):
            seen.append(weight)
        return (
            rel.status(custom, namespace, "chat").get("stableVersion")
            == "chat-api:1.1,chat-web:1.1"
        )

    wait_for(promoted, timeout=90, interval=0.2, what="the canary to be promoted")
    assert seen[:3] == [10, 25, 50]
    done = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=30)
    assert done["activeColor"] == "green"
    assert {c: rel.selector_color(api, namespace, c) for c in rel.COMPONENTS} == {
        "api": "green",
        "web": "green",
    }
    if router == "gatewayAPI":
        assert rel.route_weights(api, namespace) == {
            "chat-api-blue": 0,
            "chat-api-green": 100,
            "chat-web-blue": 0,
            "chat-web-green": 100,
        }
    else:
        assert rel.canary_ingress_weight(api, namespace) is None  # cleaned up
    wait_for(
        lambda: rel.replicas(api, namespace, "blue") == {"api": 0, "web": 0},
        timeout=30,
        what="blue scaled down",
    )
    passes = [m for m in done["analysis"] if m["verdict"] == "Pass"]
    assert {m["metric"] for m in passes} == {"error-rate", "latency-p95", "websocket-success"}


def test_bad_canary_rolls_back_and_says_why(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    rel.http_route(api, namespace)
    routing = {"gatewayAPI": {"httpRoute": "chat"}}
    _first_release(custom, namespace, rel.release_spec("1.0", rel.canary(pause="8s"), routing))
    rel.set_version(custom, namespace, "chat", "1.1")
    rel.wait_weight(custom, namespace, "chat", 25, timeout=120)
    rel.play(namespace, "1.1", errorRate=0.05)

    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=60)
    assert rel.route_weights(api, namespace) == {
        "chat-api-blue": 100,
        "chat-api-green": 0,
        "chat-web-blue": 100,
        "chat-web-green": 0,
    }
    assert rel.replicas(api, namespace, "green") == {"api": 2, "web": 2}  # abort delay
    wait_for(
        lambda: rel.replicas(api, namespace, "green") == {"api": 0, "web": 0},
        timeout=30,
        what="the canary scaled down after abortScaleDownDelaySeconds",
    )
    failed = [m for m in done["analysis"] if m["verdict"] == "Fail"]
    assert failed and failed[-1]["metric"] == "error-rate"
    # 5 % of real requests: ~100 in the 5 s window at 20 rps, so within 4 sigma of 5 %.
    assert 0.01 < float(failed[-1]["value"]) <= 0.05 + 4 * (0.05 * 0.95 / 100) ** 0.5
    assert "error-rate" in done["message"] and done["stableVersion"] == "chat-api:1.0,chat-web:1.0"
    assert any(r == "AnalysisFailed" and "error-rate" in m for r, m in _events(api, namespace))
    assert done["history"][-1]["result"] == "RolledBack"
    exported = support.metrics(operator)
    mine = f'name="chat",namespace="{namespace}"'
    assert exported[f'chatops_release_rollbacks_total{{{mine},reason="AnalysisFailed"}}'] == 1
    assert exported[f'chatops_release_phase{{{mine},phase="RolledBack"}}'] == 1
    assert exported[f'chatops_release_phase{{{mine},phase="Succeeded"}}'] == 0


@pytest.mark.serial  # stops the Prometheus every test shares
def test_prometheus_outage_holds_the_release_until_it_is_back(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    rel.http_route(api, namespace)
    spec = rel.release_spec("1.0", rel.canary(pause="3s"), {"gatewayAPI": {"httpRoute": "chat"}})
    spec["analysis"]["consecutiveErrorLimit"] = 1000
    # Right after Prometheus is back, a 5 s rate() has no samples yet for a scrape or two:
    # those rounds are errors too (no data is never a pass), tolerated by the same limit.
    _first_release(custom, namespace, spec)
    rel.set_version(custom, namespace, "chat", "1.1")
    rel.wait_weight(custom, namespace, "chat", 10, timeout=60)
    localenv.stop("prometheus")
    try:
        # Four rounds measured without Prometheus (2 s apart: well past the 3 s pause):
        # none of them may advance the release.
        def errored_rounds() -> int:
            run = rel.status(custom, namespace, "chat").get("analysisRun") or {}
            return min((m["consecutiveErrors"] for m in run.get("metrics", [])), default=0)

        wait_for(lambda: errored_rounds() >= 4, timeout=60, interval=0.3,
                 what="four rounds measured during the outage")
        held = rel.status(custom, namespace, "chat")
        assert held["canaryWeight"] == 10 and held["phase"] == "Progressing"
        assert rel.route_weights(api, namespace)["chat-api-green"] == 10
        assert any(m["verdict"] == "Error" for m in held["analysis"])
    finally:
        localenv.restart("prometheus")
    done = rel.wait_phase(custom, namespace, "chat", "Succeeded", "Promoting", timeout=90)
    assert done["activeColor"] == "green"


def _chatops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatops.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_a_version_that_never_becomes_available_is_rolled_back_at_the_deadline(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    rel.http_route(api, namespace)
    spec = rel.release_spec(
        "1.0", rel.canary(), {"gatewayAPI": {"httpRoute": "chat"}}, progressDeadlineSeconds=15
    )
    _first_release(custom, namespace, spec)
    rel.set_version(custom, namespace, "chat", "never-ready")  # kwok keeps such pods unready
    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=60)
    assert "progressDeadlineSeconds (15 s)" in done["message"]
    assert rel.route_weights(api, namespace)["chat-api-green"] == 0
    assert done["stableVersion"] == "chat-api:1.0,chat-web:1.0"
    assert any(r == "ProgressDeadlineExceeded" for r, _ in _events(api, namespace))
    wait_for(
        lambda: rel.replicas(api, namespace, "green") == {"api": 0, "web": 0},
        timeout=30,
        what="the unavailable version scaled down",
    )


def test_manual_promote_and_abort_through_the_cli(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    strategy = {
        "blueGreen": {"autoPromote": False, "postPromotionWindow": "2s", "scaleDownDelaySeconds": 2}
    }
    _first_release(custom, namespace, rel.release_spec("1.0", strategy))
    rel.set_version(custom, namespace, "chat", "1.1")
    paused = rel.wait_phase(custom, namespace, "chat", "Paused", timeout=60)
    assert "waiting for chatops.dev/promote" in paused["message"]
    time.sleep(3)
    assert rel.status(custom, namespace, "chat")["phase"] == "Paused"
    assert {rel.selector_color(api, namespace, c) for c in rel.COMPONENTS} == {"blue"}
    promoted = _chatops("promote", "chat", "-n", namespace)
    assert promoted.returncode == 0, promoted.stderr
    done = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=60)
    assert done["activeColor"] == "green"

    # and a canary aborted half-way through
    rel.http_route(api, namespace)
    custom.patch_namespaced_custom_object(
        "chatops.dev",
        "v1alpha1",
        namespace,
        "chatreleases",
        "chat",
        {
            "spec": {
                "strategy": {"blueGreen": None, **rel.canary(pause="30s")},
                "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
            }
        },
    )
    rel.set_version(custom, namespace, "chat", "1.2")
    rel.wait_weight(custom, namespace, "chat", 10, timeout=60)
    aborted = _chatops("abort", "chat", "-n", namespace)
    assert aborted.returncode == 0, aborted.stderr
    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=30)
    assert "aborted by chatops.dev/abort" in done["message"]
    assert rel.route_weights(api, namespace)["chat-api-green"] == 100  # green is stable now
    shown = _chatops("status", "chat", "-n", namespace)
    assert "RolledBack" in shown.stdout and "chat-api:1.1" in shown.stdout


def test_a_missing_route_is_reported_where_the_user_looks(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    rel.traffic(namespace, "chat", "blue")
    spec = rel.release_spec("1.0", rel.canary(), {"gatewayAPI": {"httpRoute": "missing"}})
    rel.create(custom, namespace, "chat", spec)
    stuck = wait_for(
        lambda: (
            "cannot carry out" in (m := rel.status(custom, namespace, "chat").get("message", ""))
            and m
        ),
        timeout=60,
        what="a message about the missing HTTPRoute",
    )
    assert "missing" in stuck and "HTTPRoute" in stuck
    assert any(r == "ActionFailed" and "missing" in m for r, m in _events(api, namespace))


def test_rolling_update_in_place_and_back_on_a_bad_version(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    strategy = {"rolling": {"maxSurge": 1, "maxUnavailable": 0, "analysisWindow": "4s"}}
    _first_release(custom, namespace, rel.release_spec("1.0", strategy))
    rel.set_version(custom, namespace, "chat", "1.1")
    done = wait_for(
        lambda: (
            (s := rel.status(custom, namespace, "chat")).get("stableVersion")
            == "chat-api:1.1,chat-web:1.1"
            and s
        ),
        timeout=180,
        what="1.1 rolled out in place",
    )
    assert done["phase"] == "Succeeded" and done["activeColor"] == "blue"
    apps = client.AppsV1Api(api)

    def images() -> set[str]:
        return {
            apps.read_namespaced_deployment(f"chat-{c}-blue", namespace)
            .spec.template.spec.containers[0]
            .image
            for c in rel.COMPONENTS
        }

    assert images() == {"chat-api:1.1", "chat-web:1.1"}
    assert rel.replicas(api, namespace, "green") == {}  # in place: no second color

    # 1.2 fails, in the pods it rolls onto: 30 %, so that each round of the 4 s window,
    # which sees a few dozen requests of the first new pod, catches it (at 5 %, about one
    # such round in six sees no error: 0.95^33; once under load the version passed)
    rel.play(namespace, "1.2", errorRate=0.3)
    rel.set_version(custom, namespace, "chat", "1.2")
    failed = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=90)
    assert "error-rate" in failed["message"]
    wait_for(
        lambda: images() == {"chat-api:1.1", "chat-web:1.1"},
        timeout=60,
        what="the Deployments back on 1.1's template",
    )
    wait_for(
        lambda: all(rel.available(api, namespace, f"chat-{c}-blue") for c in rel.COMPONENTS),
        timeout=60,
        what="1.1 Available again",
    )


def _first_release_with_p95(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str, **metric: Any
) -> None:
    """A first canary release whose analysis adds the runbook's p95 query as `metric`
    changes it (its name, bounds, dryRun or compareToStable)."""
    rel.http_route(api, namespace)
    spec = rel.release_spec("1.0", rel.canary(pause="3s"), {"gatewayAPI": {"httpRoute": "chat"}})
    p95 = next(m for m in spec["analysis"]["metrics"] if m["name"] == "latency-p95")
    spec["analysis"]["metrics"].append({**p95, **metric})
    _first_release(custom, namespace, spec)


def test_a_dry_run_metric_failing_every_round_is_shown_and_never_stops_the_release(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """A stricter latency query tried in dryRun on a real release (p95 under 1 µs: every
    real request is slower): it fails every round through the real Prometheus, the
    runbook's metrics pass, and the canary walks every step and promotes. Status and
    `chatops status` show the dry run's verdicts as such."""
    _first_release_with_p95(api, custom, namespace, name="latency-strict", max=0.000001,
                            dryRun=True)
    rel.set_version(custom, namespace, "chat", "1.1")
    tried: list[dict[str, Any]] = []

    def promoted() -> bool:
        s = rel.status(custom, namespace, "chat")
        assert s.get("phase") not in ("RolledBack", "Degraded", "Paused"), s.get("message")
        tried.extend(m for m in s.get("analysis", []) if m["metric"] == "latency-strict"
                     and m not in tried)
        return s.get("stableVersion") == "chat-api:1.1,chat-web:1.1"

    wait_for(promoted, timeout=120, interval=0.3, what="the canary to be promoted")
    done = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=30)
    assert done["history"][-1]["result"] == "Succeeded"
    # A round before the first request reaches a pod has no series: the dry run says
    # Error then (onNoData), and that does not decide either.
    assert tried and all(m["dryRun"] and m["verdict"] in ("Fail", "Error") for m in tried), tried
    assert {m["component"] for m in tried if m["verdict"] == "Fail"} == {"api", "web"}, tried
    shown = _chatops("status", "chat", "-n", namespace)
    assert "latency-strict" in shown.stdout and "Fail (dryRun)" in shown.stdout, shown.stdout


def test_a_canary_slower_than_the_stable_by_more_than_its_ratio_rolls_back(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """p95 compared to the stable version's, through the real Prometheus: 1.1 answers in
    0.2 s, under the runbook's fixed 500 ms, but far past 1.5 times what 1.0 answers in:
    the release rolls back, and says against what."""
    _first_release_with_p95(api, custom, namespace, name="p95-vs-stable", max=1.5,
                            compareToStable=True)
    rel.play(namespace, "1.1", latency=0.2)
    rel.set_version(custom, namespace, "chat", "1.1")

    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=90)
    assert "p95-vs-stable on" in done["message"] and "times stable" in done["message"], done
    judged = [m for m in done["analysis"] if m["metric"] == "p95-vs-stable"]
    assert judged and judged[-1]["verdict"] == "Fail" and judged[-1]["stableValue"]
    assert float(judged[-1]["value"]) > 1.5 * float(judged[-1]["stableValue"])
    absolute = [m for m in done["analysis"] if m["metric"] == "latency-p95"]
    assert absolute and all(m["verdict"] != "Fail" for m in absolute)  # under 500 ms


def test_a_canary_going_bad_between_rounds_is_caught_by_the_sweep_not_the_interval(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Rounds a minute apart; the canary starts failing 5 % of its requests right after
    a passing round. The operator's sweep (one grouped query per template, every 2 s)
    sees it out of bounds and the release takes its next round at once: rolled back
    long before the round the interval would have brought."""
    rel.http_route(api, namespace)
    routing = {"gatewayAPI": {"httpRoute": "chat"}}
    spec = rel.release_spec("1.0", rel.canary(pause="120s", weights=(10,)), routing)
    spec["analysis"].update(interval="60s", initialDelay="8s")  # the first round with data
    _first_release(custom, namespace, spec)
    rel.set_version(custom, namespace, "chat", "1.1")

    def passed_at_10() -> list[dict[str, Any]]:
        s = rel.status(custom, namespace, "chat")
        rounds = [m for m in s.get("analysis") or [] if m["component"] == "api"
                  and m["metric"] == "error-rate" and m["verdict"] == "Pass"]
        return rounds if s.get("canaryWeight") == 10 else []

    first = wait_for(passed_at_10, timeout=120, interval=0.2, what="a passing round at 10 %")
    rel.play(namespace, "1.1", errorRate=0.05)
    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=120)
    failed = [m for m in done["analysis"] if m["verdict"] == "Fail"]
    assert failed and failed[-1]["metric"] == "error-rate", done["analysis"]
    passed, caught = first[-1]["time"], failed[-1]["time"]
    due = clock.parse(passed) + datetime.timedelta(seconds=60)
    assert clock.parse(caught) < due, (passed, caught)  # before the interval's round
    exported = support.metrics(operator)
    assert exported["chatops_sweep_breaches_total{}"] >= 1
    assert exported["chatops_sweep_queries_total{}"] >= 1
