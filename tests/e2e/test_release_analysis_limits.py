"""Issue 8, case 1: the analysis never forgets a failure. The limits are judged from
counters per analysis run (`status.analysisRun`), exact however few measurements
`status.analysis` keeps for people (60), and every component's latest measurements show
there however many components and metrics.

Each test is shaped so that the old judging (from the 60 kept measurements) gets it
wrong: the failures, or the errors in a row, are spread over more rounds than 60
measurements hold (15 rounds of 2 components x 2 metrics).
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import releases as rel
from support import wait_for

pytestmark = pytest.mark.e2e
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "env"))
import localenv  # noqa: E402

KEPT = 60
"""What status.analysis kept, and what the old judging counted from."""
ROUNDS_KEPT = KEPT // 4
"""Rounds of 2 components x 2 metrics in that many measurements."""


def _route(api: client.ApiClient, namespace: str, components: list[str]) -> None:
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": f"/{c}"}}],
            "backendRefs": [
                {"name": f"chat-{c}-blue", "port": 8080, "weight": 100},
                {"name": f"chat-{c}-green", "port": 8080, "weight": 0},
            ],
        }
        for c in components
    ]
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        namespace,
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "chat"},
            "spec": {"rules": rules},
        },
    )


def _two_metrics() -> list[dict[str, Any]]:
    """The error rate from the last two scrapes (`irate`), so that an error burst the
    test stops at once fails a round or two, not the five of a 5 s `rate` window."""
    sel = 'namespace="{{namespace}}",service="{{service}}"'
    error_rate = {
        "name": "error-rate",
        "max": 0.01,
        "query": f'sum(irate(http_requests_total{{{sel},code=~"5.."}}[5s])) / '
        f"sum(irate(http_requests_total{{{sel}}}[5s]))",
    }
    return [error_rate, rel.metrics()[1]]


def _in_a_long_pause(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str, **limits: Any
) -> None:
    """Release 1.0, then 1.1 into a five-minute pause at 10 %, measured every second."""
    _route(api, namespace, list(rel.COMPONENTS))
    rel.traffic(namespace, "chat", "blue", "green")
    strategy = {
        "canary": {
            "steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 100}],
            "scaleDownDelaySeconds": 1,
            "abortScaleDownDelaySeconds": 1,
        }
    }
    spec = rel.release_spec("1.0", strategy, {"gatewayAPI": {"httpRoute": "chat"}}, health=False)
    # the first round once Prometheus has scraped the new pods: rounds without data
    # (consecutiveErrorLimit) are not what these tests are about
    spec["analysis"].update(interval="1s", initialDelay="3s", metrics=_two_metrics(), **limits)
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
    rel.set_version(custom, namespace, "chat", "1.1")
    wait_for(
        lambda: _passes(custom, namespace) >= 2,
        timeout=90,
        interval=0.3,
        what="the pause measured and passing",
    )


def _passes(custom: client.CustomObjectsApi, namespace: str) -> int:
    return sum(
        1
        for m in rel.status(custom, namespace, "chat").get("analysis", [])
        if m["component"] == "api" and m["metric"] == "error-rate" and m["verdict"] == "Pass"
    )


def _api_errors(namespace: str, rate: float) -> None:
    """The canary's (1.1) api fails `rate` of its requests; its web goes on passing, so
    the only failures counted are the api's (the limit is per metric and component)."""
    rel.chatapp("PUT", f"/versions/chat-api:1.1?namespace={namespace}", {"errorRate": rate})


class Rounds:
    """The rounds status shows, remembered across polls (a round stays in status.analysis
    for 15 rounds, and the test polls several times a round)."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        self.verdicts: dict[str, str] = {}  # round time -> verdict of error-rate on api
        self.status: dict[str, Any] = {}

    def poll(self) -> dict[str, Any]:
        self.status = rel.status(self.custom, self.namespace, "chat")
        for m in self.status.get("analysis", []):
            if m["component"] == "api" and m["metric"] == "error-rate":
                self.verdicts[m["time"]] = m["verdict"]
        return self.status

    def count(self, verdict: str) -> int:
        return sum(1 for v in self.verdicts.values() if v == verdict)

    def in_order(self) -> list[str]:
        times = sorted(self.verdicts, key=datetime.datetime.fromisoformat)
        return [self.verdicts[t] for t in times]

    def since_last(self, verdict: str) -> int:
        """Rounds seen since the latest with `verdict`."""
        seen = self.in_order()
        last = max((i for i, v in enumerate(seen) if v == verdict), default=-1)
        return len(seen) - 1 - last


def test_failures_spread_over_a_long_pause_roll_back(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Error bursts on the canary's api, each failing a few rounds and each followed by
    more passing rounds than status keeps: once the failures add up past failureLimit,
    the release rolls back (the old judging saw at most one burst at a time)."""
    limit = 6  # a burst fails a few rounds (the error rate shows for a scrape or two)
    _in_a_long_pause(api, custom, namespace, failureLimit=limit)
    rounds = Rounds(custom, namespace)
    bursts = 0
    while rounds.count("Fail") <= limit:
        bursts += 1
        assert bursts <= 8, rounds.verdicts
        _api_errors(namespace, 0.5)  # the canary's api only: web would count its own
        wait_for(
            lambda: rounds.poll().get("phase") == "RolledBack" or rounds.since_last("Fail") == 0,
            timeout=30,
            interval=0.1,
            what="a failed round",
        )
        _api_errors(namespace, 0.0)
        if rounds.count("Fail") > limit or rounds.status.get("phase") == "RolledBack":
            break
        wait_for(
            lambda: rounds.poll().get("phase") == "RolledBack"
            or rounds.since_last("Fail") > ROUNDS_KEPT,
            timeout=60,
            interval=0.3,
            what=f"{ROUNDS_KEPT} rounds after the failure",
        )
        if rounds.status.get("phase") == "RolledBack":
            # the burst's last failed rounds (its errors show for a scrape or two after
            # it stopped) may take the count past the limit while the test waits
            assert rounds.count("Fail") > limit, (
                f"rolled back with {rounds.count('Fail')} failure(s) of at most {limit}: "
                f"{rounds.status.get('message')}"
            )
            break
    rounds.poll()
    # What the limit is judged from: the run's counters, kept in status after the rollback.
    counted = {
        (m["metric"], m["component"]): m
        for m in (rounds.status.get("analysisRun") or {}).get("metrics", [])
    }
    failed = counted[("error-rate", "api")]["failed"]
    assert failed > limit, (failed, rounds.in_order())
    assert rounds.count("Fail") >= limit, rounds.in_order()  # and status showed them
    # The failures were spread: no 15 rounds in a row (what 60 measurements held) saw
    # more than failureLimit of them, so only counting the whole run catches them.
    verdicts = rounds.in_order()
    windows = (verdicts[i : i + ROUNDS_KEPT] for i in range(len(verdicts)))
    assert max(w.count("Fail") for w in windows) <= limit, verdicts
    done = rel.wait_phase(custom, namespace, "chat", "RolledBack", "Succeeded", timeout=30)
    assert done["phase"] == "RolledBack", done.get("message")
    assert "error-rate on api failed" in done["message"]
    assert f"more than failureLimit {limit}" in done["message"]
    assert rel.route_weights(api, namespace)["chat-api-blue"] == 100


@pytest.mark.serial  # stops the Prometheus every test shares
def test_a_prometheus_outage_longer_than_the_kept_window_rolls_back(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """The real Prometheus is stopped for more rounds than status keeps and more than
    consecutiveErrorLimit: every round errors, and the release rolls back."""
    errors = ROUNDS_KEPT + 1  # more than the old judging could ever see in a row
    _in_a_long_pause(api, custom, namespace, consecutiveErrorLimit=errors)
    localenv.stop("prometheus")
    try:
        done = rel.wait_phase(custom, namespace, "chat", "RolledBack", timeout=90)
    finally:
        localenv.restart("prometheus")
        localenv.wait_until(
            "Prometheus", lambda: localenv.http_ok(f"{os.environ['PROMETHEUS_URL']}/-/ready")
        )
    tripped = re.search(r"(\S+) on (\S+) errored (\d+) time\(s\) in a row", done["message"])
    assert tripped, done["message"]
    assert int(tripped[3]) == errors + 1, done["message"]
    assert f"more than consecutiveErrorLimit {errors}" in done["message"]
    # the counter that tripped is the one status shows (a metric already erroring before
    # the stop, such as a latency quantile of a quiet second, may be the one that trips)
    counts = {(c["metric"], c["component"]): c for c in done["analysisRun"]["metrics"]}
    assert counts[(tripped[1], tripped[2])]["consecutiveErrors"] == errors + 1
    # and every counter was erroring when it did
    assert all(c["lastVerdict"] == "Error" and c["consecutiveErrors"] for c in counts.values()), (
        counts
    )
    assert len(done["analysis"]) <= KEPT
    assert rel.route_weights(api, namespace)["chat-api-blue"] == 100


def test_every_component_shows_its_measurements_with_ten_components_and_seven_metrics(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """10 components x 7 metrics is 70 measurements a round, more than the 60 status
    kept: each (metric, component) still shows its latest measurement."""
    components = [f"c{i}" for i in range(10)]
    _route(api, namespace, components)
    for c in components:  # a little traffic each: the test counts measurements shown
        for color in ("blue", "green"):
            rel.chatapp("PUT", f"/traffic/{namespace}/chat-{c}-{color}", {"rps": 5})
    metrics = [
        {**metric, "name": f"{metric['name']}-{n}"}
        for n, metric in enumerate([*rel.metrics(), *rel.metrics(), rel.metrics()[0]])
    ]
    spec = rel.release_spec(
        "1.0",
        {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}]}},
        {"gatewayAPI": {"httpRoute": "chat"}},
        health=False,
    )
    template = spec["components"][0]
    spec["components"] = [
        {**template, "name": c, "replicas": 1, "template": _image(template, c, "1.0")}
        for c in components
    ]
    spec["analysis"].update(interval="1s", metrics=metrics)
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=120)
    body = rel.get(custom, namespace, "chat")
    new = [{**c, "template": _image(c, c["name"], "1.1")} for c in body["spec"]["components"]]
    custom.patch_namespaced_custom_object(
        rel.GROUP, rel.VERSION, namespace, rel.PLURAL, "chat", {"spec": {"components": new}}
    )
    wanted = {(m["name"], c) for m in metrics for c in components}
    rounds: set[str] = set()

    def shown() -> dict[str, Any] | None:
        status = rel.status(custom, namespace, "chat")
        kept = status.get("analysis", [])
        rounds.update(m["time"] for m in kept)
        seen = {(m["metric"], m["component"]) for m in kept}
        return status if len(rounds) >= 3 and seen == wanted else None

    # ten new Deployments rolled out, then three rounds of 70 queries: minutes on a busy
    # machine (a clean-clone run beside the other tests took more than two)
    status = wait_for(shown, timeout=300, interval=0.5, what="the latest of all 70 pairs")
    assert len(status["analysis"]) <= 200
    run = status["analysisRun"]
    assert {(c["metric"], c["component"]) for c in run["metrics"]} == wanted


def _image(component: dict[str, Any], name: str, version: str) -> dict[str, Any]:
    container = {**component["template"]["spec"]["containers"][0], "name": name}
    container["image"] = f"chat-{name}:{version}"
    return {"spec": {"containers": [container]}}
