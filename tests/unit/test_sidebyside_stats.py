"""The side-by-side benchmark's arithmetic (bench/sidebyside_stats.py): whose request an
audit event is, each request counted once, the medians and ratios of the table and the
issue's targets."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sidebyside_stats import (
    Request,
    Spread,
    Target,
    audited,
    controller_of,
    count,
    error_rate,
    first_at,
    ratio,
    spread,
    step_lags,
)

NAMESPACES = {"chatops": "sbs-chatops-1", "argo": "sbs-argo-1", "flagger": "sbs-flagger-1"}


def event(
    audit_id: str,
    agent: str,
    namespace: str | None,
    stage: str = "ResponseComplete",
    at: str = "2026-12-04T22:00:00.500000Z",
) -> str:
    ref = {"resource": "httproutes", **({"namespace": namespace} if namespace else {})}
    return json.dumps(
        {
            "auditID": audit_id,
            "stage": stage,
            "verb": "patch",
            "userAgent": agent,
            "objectRef": ref,
            "requestReceivedTimestamp": at,
        }
    )


def test_the_query_gives_zero_not_no_data_for_a_canary_without_errors() -> None:
    query = error_rate('namespace="n",app="web"')
    assert query == (
        '(sum(rate(http_requests_total{namespace="n",app="web",code=~"5.."}[1m]))'
        ' or sum(rate(http_requests_total{namespace="n",app="web"}[1m])) * 0)'
        ' / sum(rate(http_requests_total{namespace="n",app="web"}[1m]))'
    )


def test_requests_are_told_apart_by_user_agent_and_chatops_by_its_namespace_too() -> None:
    assert controller_of("rollouts-controller/v0.0.0 (linux/amd64)", "x", NAMESPACES) == "argo"
    assert controller_of("argo-rollouts-gatewayapi-plugin", "sbs-argo-1", NAMESPACES) == "argo"
    assert controller_of("flagger/v0.0.0 (linux/amd64)", None, NAMESPACES) == "flagger"
    assert controller_of("kopf/1.37", "sbs-chatops-1", NAMESPACES) == "chatops"
    assert controller_of("OpenAPI-Generator/32/python", "sbs-chatops-1", NAMESPACES) == "chatops"
    # the chat app simulator uses the same client, cluster-wide: not chatops'
    assert controller_of("OpenAPI-Generator/32/python", None, NAMESPACES) == ""
    assert controller_of("sidebyside-bench", "sbs-chatops-1", NAMESPACES) == ""


def test_a_request_is_counted_once_whatever_its_stages_and_bad_lines_are_skipped() -> None:
    lines = [
        event("a", "flagger/v0", None, stage="ResponseStarted"),
        event("a", "flagger/v0", None),
        event("b", "kopf/1", "sbs-chatops-1", at="2026-12-04T22:00:02Z"),
        event("c", "kwok/v0.8", "sbs-chatops-1"),
        '{"auditID": "d", "userAg',
    ]
    found = audited(lines, NAMESPACES)
    assert [(r.controller, r.verb, r.resource) for r in found] == [
        ("flagger", "patch", "httproutes"),
        ("chatops", "patch", "httproutes"),
    ]
    start = found[0].at
    assert count(found, "chatops", start, start + 1) == 0
    assert count(found, "chatops", start, start + 1.5) == 1


def test_count_keeps_to_the_window_and_the_controller() -> None:
    requests = [
        Request(10.0, "argo", "get", "rollouts"),
        Request(20.0, "argo", "get", "x"),
        Request(15.0, "flagger", "get", "canaries"),
    ]
    assert count(requests, "argo", 10.0, 15.0) == 1
    assert count(requests, "argo", 0, 30) == 2


def test_spread_leaves_out_runs_that_never_got_there() -> None:
    s = spread([3.0, None, 1.0, 2.0, math.nan])
    assert (s.median, s.low, s.high, s.n) == (2.0, 1.0, 3.0, 3)
    assert s.show(" s") == "2.00 s (1.00-3.00)"
    assert spread([None]).show() == "-"
    assert spread([5.0]).show(" MiB", 0) == "5 MiB"


def test_ratio_and_targets() -> None:
    ours, argo = Spread(50, 40, 60, 3), Spread(101, 90, 110, 3)
    assert ratio(ours, argo) == 50 / 101
    assert math.isnan(ratio(ours, Spread(0, 0, 0, 3)))
    assert math.isnan(ratio(spread([]), argo))
    rows = {"requests": {"chatops": ours, "argo": argo}}
    assert Target("requests", "argo", 0.5).met(rows) is True
    assert Target("requests", "argo", 0.4).met(rows) is False
    rows["requests"]["chatops"] = spread([])
    assert Target("requests", "argo", 0.5).met(rows) is None


def route(*points: tuple[float, int]) -> list[tuple[float, dict[str, int]]]:
    """A route's history: (time, the canary's weight), stable the rest."""
    return [(t, {"stable": 100 - w, "canary": w}) for t, w in points]


def test_step_lag_is_each_weights_stay_beyond_its_pause_read_from_the_route() -> None:
    history = route((1, 0), (10, 10), (30.5, 25), (51, 50), (71.2, 100))
    lags = step_lags(history, "canary", 5, (10, 25, 50), (20, 20, 20))
    assert [round(x, 2) for x in lags if x is not None] == [0.5, 0.5, 0.2]
    assert first_at(history, "canary", 10, 5) == 10
    # Flagger's last weight lasts two ticks; another backend's change is no move
    history = route((10, 10), (30, 25), (50, 50), (90.3, 0))
    lags = step_lags(history, "canary", 0, (10, 25, 50), (20, 20, 40))
    assert [round(x, 2) for x in lags if x is not None] == [0, 0, 0.3]


def test_step_lag_stops_at_the_first_step_not_seen_both_ways() -> None:
    history = route((0, 10), (3, 25))  # an earlier canary's, before `since`
    assert step_lags(history, "canary", 5, (10, 25, 50), (20, 20, 20)) == [None] * 3
    history = route((10, 10), (31, 25))
    assert step_lags(history, "canary", 5, (10, 25, 50), (20, 20, 20)) == [1, None, None]
    assert first_at(history, "canary", 50, 0) is None
