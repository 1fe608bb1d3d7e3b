"""Templated queries and the verdict on one value, as a user reads them in status."""

from __future__ import annotations

import math

import pytest

from chatops.api.analysis import DEFAULT_METRICS, Analysis, Metric, Verdict
from chatops.errors import MetricsUnavailable, UnknownPlaceholder
from chatops.metrics.analysis import (
    QueryContext,
    TrafficSeen,
    judge,
    placeholder_problems,
    render,
)

CONTEXT = QueryContext(
    service="chat-api-green", namespace="prod", component="api", color="green", revision="7f3a"
)
ERROR_RATE = Metric(name="error-rate", query="q", max=0.01)
WS_SUCCESS = Metric(name="websocket-success", query="q", min=0.99)
LATENCY = Metric(name="latency", query="q", min=0.0, max=0.5)


def test_every_placeholder_is_filled() -> None:
    query = (
        'sum(rate(x{namespace="{{namespace}}",service="{{ service }}",component="{{component}}",'
        'color="{{color}}",revision="{{revision}}"}[1m]))'
    )
    assert render(query, CONTEXT) == (
        'sum(rate(x{namespace="prod",service="chat-api-green",component="api",'
        'color="green",revision="7f3a"}[1m]))'
    )


def test_the_default_queries_render_to_plain_promql() -> None:
    for metric in DEFAULT_METRICS:
        rendered = render(metric.query, CONTEXT)
        assert "{{" not in rendered and "}}" not in rendered
        assert 'service="chat-api-green"' in rendered and 'namespace="prod"' in rendered


def test_an_unknown_placeholder_is_named() -> None:
    with pytest.raises(UnknownPlaceholder) as raised:
        render('rate(x{pod="{{pod}}"}[1m])', CONTEXT, "spec.analysis.metrics[2].query")
    message = str(raised.value)
    assert message.startswith("ChatRelease: spec.analysis.metrics[2].query: ")
    assert "unknown placeholder {{pod}}" in message
    assert "{{service}}" in message  # and what to use instead


def test_placeholder_problems_lists_every_bad_query_for_the_accepted_condition() -> None:
    analysis = Analysis.model_validate(
        {
            "metrics": [
                {"name": "ok", "query": "up{service='{{service}}'}", "max": 1},
                {"name": "bad", "query": "up{pod='{{pod}}',x='{{args.x}}'}", "max": 1},
            ],
            "minimumTraffic": {"query": "sum(x{svc='{{svc}}'})"},
        }
    )
    assert placeholder_problems(analysis) == [
        "spec.analysis.metrics[1].query: unknown placeholder {{pod}}; use one of "
        "{{service}}, {{namespace}}, {{component}}, {{color}}, {{revision}}",
        "spec.analysis.metrics[1].query: unknown placeholder {{args.x}}; use one of "
        "{{service}}, {{namespace}}, {{component}}, {{color}}, {{revision}}",
        "spec.analysis.minimumTraffic.query: unknown placeholder {{svc}}; use one of "
        "{{service}}, {{namespace}}, {{component}}, {{color}}, {{revision}}",
    ]


UNAVAILABLE = MetricsUnavailable("http://prometheus:9090", "unreachable: connection refused")
ENOUGH = TrafficSeen(requests=500, minimum=10)


@pytest.mark.parametrize(
    ("metric", "value", "traffic", "verdict", "message"),
    [
        (ERROR_RATE, 0.001, None, "Pass", "0.001 within max 0.01"),
        (ERROR_RATE, 0.01, None, "Pass", "0.01 within max 0.01"),
        (ERROR_RATE, 0.05, None, "Fail", "0.05 > max 0.01"),
        (ERROR_RATE, math.inf, None, "Fail", "+Inf > max 0.01"),
        (WS_SUCCESS, 0.995, None, "Pass", "0.995 within min 0.99"),
        (WS_SUCCESS, 0.99, None, "Pass", "0.99 within min 0.99"),
        (WS_SUCCESS, 0.9, None, "Fail", "0.9 < min 0.99"),
        (LATENCY, 0.3, None, "Pass", "0.3 within min 0 and max 0.5"),
        (LATENCY, 0.7, ENOUGH, "Fail", "0.7 > max 0.5"),
        (LATENCY, -1.0, ENOUGH, "Fail", "-1 < min 0"),
        # No data is not a silent pass: by default an error (held, retried, counted in a row).
        (ERROR_RATE, None, None, "Error", "no data (no series); onNoData is Error"),
        (ERROR_RATE, math.nan, None, "Error", "no data (NaN); onNoData is Error"),
        (
            ERROR_RATE.model_copy(update={"on_no_data": "Inconclusive"}),
            None,
            None,
            "Inconclusive",
            "no data (no series); onNoData is Inconclusive",
        ),
        (
            ERROR_RATE.model_copy(update={"on_no_data": "Fail"}),
            None,
            None,
            "Fail",
            "no data (no series); onNoData is Fail",
        ),
        (
            ERROR_RATE.model_copy(update={"on_no_data": "Pass"}),
            math.nan,
            None,
            "Pass",
            "no data (NaN); onNoData is Pass",
        ),
        # Prometheus unreachable is an error, whatever else is known.
        (
            ERROR_RATE,
            UNAVAILABLE,
            None,
            "Error",
            "Prometheus at http://prometheus:9090: unreachable",
        ),
        (ERROR_RATE, UNAVAILABLE, TrafficSeen(1, 10), "Error", "unreachable: connection refused"),
        # Too little traffic proves nothing, either way.
        (ERROR_RATE, 0.0, TrafficSeen(3, 10), "Inconclusive", "too little traffic: 3 < 10"),
        (ERROR_RATE, 0.5, TrafficSeen(3, 10), "Inconclusive", "too little traffic: 3 < 10"),
        (ERROR_RATE, 0.0, TrafficSeen(None, 10), "Inconclusive", "too little traffic: 0 < 10"),
        (
            ERROR_RATE,
            0.0,
            TrafficSeen(math.nan, 10),
            "Inconclusive",
            "too little traffic: NaN < 10",
        ),
        (ERROR_RATE, 0.0, TrafficSeen(10, 10), "Pass", "0 within max 0.01"),
        (ERROR_RATE, 0.05, ENOUGH, "Fail", "0.05 > max 0.01"),
    ],
)
def test_judge(
    metric: Metric,
    value: float | MetricsUnavailable | None,
    traffic: TrafficSeen | None,
    verdict: Verdict,
    message: str,
) -> None:
    got, why = judge(metric, value, traffic)
    assert got == verdict
    assert message in why
