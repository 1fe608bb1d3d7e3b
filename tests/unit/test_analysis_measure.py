"""Prometheus answers turned into one number, and one round of measurements recorded."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from prometheus_api_client.exceptions import PrometheusApiClientException

from chatops.api.analysis import Analysis
from chatops.errors import MetricsUnavailable, UnknownPlaceholder
from chatops.metrics.analysis import QueryContext
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider, _http_problem, one_number, public_address

ADDRESS = "http://prometheus:9090"


def series(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.0, value]}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ([], None),
        ([series("0.05")], 0.05),
        ([series("0", service="a")], 0.0),
        ([series("+Inf")], math.inf),
        ([1700000000.0, "3"], 3.0),  # a scalar result
    ],
)
def test_one_number(result: Any, expected: float | None) -> None:
    assert one_number(result, ADDRESS) == expected


def test_nan_stays_nan() -> None:
    value = one_number([series("NaN")], ADDRESS)
    assert value is not None and math.isnan(value)


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (
            [series("1", service="a"), series("2", service="b")],
            r"the query returned 2 series; it must return one number \(aggregate it",
        ),
        ([{"metric": {}, "values": [[1, "1"], [2, "2"]]}], "range vector; it must return one"),
        ([1700000000.0, "hello"], "the query returned 'hello', not a number"),
        ({"unexpected": True}, "not a Prometheus query result"),
    ],
)
def test_anything_but_one_number_is_unavailable(result: Any, problem: str) -> None:
    with pytest.raises(MetricsUnavailable, match=problem) as raised:
        one_number(result, ADDRESS)
    assert str(raised.value).startswith(f"Prometheus at {ADDRESS}: ")


def test_a_refused_query_says_why_in_prometheus_words() -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}'
    err = PrometheusApiClientException(f"HTTP Status Code 400 ({body!r})")
    assert _http_problem(err) == "answered HTTP 400: 1:5: parse error: unexpected"
    gateway = PrometheusApiClientException("HTTP Status Code 502 (b'<html>bad gateway</html>')")
    assert _http_problem(gateway) == "answered HTTP 502"


def test_the_address_shown_has_no_credentials() -> None:
    assert public_address("https://user:s3cret@prom.example.com:9443/prom/") == (
        "https://prom.example.com:9443/prom"
    )


def test_the_token_is_not_in_the_providers_repr() -> None:
    provider = PrometheusProvider("http://prometheus:9090", token="tok-very-secret")
    assert "tok-very-secret" not in repr(provider)
    assert "tok-very-secret" not in str(vars(provider).get("address"))


class Answers:
    """A MetricProvider answering from a table; a query it lacks is unreachable."""

    def __init__(self, answers: dict[str, float | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str) -> float | None:
        self.asked.append(promql)
        if promql not in self.answers:
            raise MetricsUnavailable(ADDRESS, "unreachable: [Errno 111] Connection refused")
        return self.answers[promql]


CONTEXT = QueryContext("chat-api-green", "prod", "api", "green", "7f3a")
NOW = datetime.datetime(2026, 3, 1, 12, 0, 30, tzinfo=datetime.UTC)
ANALYSIS = Analysis.model_validate(
    {
        "metrics": [
            {"name": "error-rate", "query": 'errors{service="{{service}}"}', "max": 0.01},
            {"name": "ws", "query": 'ws{service="{{service}}"}', "min": 0.99},
            {"name": "latency", "query": 'p95{service="{{service}}"}', "max": 0.5},
        ],
        "minimumTraffic": {"query": 'requests{service="{{service}}"}', "min": 10},
    }
)


def test_a_round_records_every_metric_with_its_query_value_verdict_and_time() -> None:
    provider = Answers(
        {
            'requests{service="chat-api-green"}': 120,
            'errors{service="chat-api-green"}': 0.05,
            'ws{service="chat-api-green"}': math.nan,
        }
    )
    got = measure(provider, ANALYSIS, CONTEXT, NOW)
    assert [(m.metric, m.component, m.value, m.verdict) for m in got] == [
        ("error-rate", "api", "0.05", "Fail"),
        ("ws", "api", "NaN", "Error"),
        ("latency", "api", None, "Error"),
    ]
    assert got[0].query == 'errors{service="chat-api-green"}'
    assert got[0].message == "0.05 > max 0.01"
    assert "Connection refused" in got[2].message
    assert {m.time for m in got} == {"2026-03-01T12:00:30Z"}
    assert provider.asked.count('requests{service="chat-api-green"}') == 1


def test_too_little_traffic_keeps_the_values_but_judges_nothing() -> None:
    provider = Answers(
        {
            'requests{service="chat-api-green"}': 3,
            'errors{service="chat-api-green"}': 0.0,
            'ws{service="chat-api-green"}': 1.0,
            'p95{service="chat-api-green"}': 0.9,
        }
    )
    got = measure(provider, ANALYSIS, CONTEXT, NOW)
    assert [(m.value, m.verdict) for m in got] == [
        ("0", "Inconclusive"),
        ("1", "Inconclusive"),
        ("0.9", "Inconclusive"),
    ]
    assert all(m.message == "too little traffic: 3 < 10" for m in got)


def test_an_unanswered_traffic_guard_makes_every_metric_an_error() -> None:
    provider = Answers({'errors{service="chat-api-green"}': 0.0})
    got = measure(provider, ANALYSIS, CONTEXT, NOW)
    assert {m.verdict for m in got} == {"Error"}
    assert got[0].message.startswith(f"Prometheus at {ADDRESS}: minimum-traffic query: ")


def test_an_unknown_placeholder_is_a_spec_error_not_a_measurement() -> None:
    analysis = Analysis.model_validate(
        {"metrics": [{"name": "x", "query": 'x{pod="{{pod}}"}', "max": 1}]}
    )
    with pytest.raises(UnknownPlaceholder, match=r"spec.analysis.metrics\[0\].query"):
        measure(Answers({}), analysis, CONTEXT, NOW)


STABLE = QueryContext("chat-api-blue", "prod", "api", "blue", "5d8c")
RELATIVE = Analysis.model_validate(
    {"metrics": [{"name": "p95-vs-stable", "query": 'p95{service="{{service}}"}',
                  "max": 1.5, "compareToStable": True}]}
)


@pytest.mark.parametrize(
    ("canary", "stable", "verdict", "message"),
    [
        (0.7, 0.5, "Pass", "0.7 within max 0.75 (max 1.5 times stable 0.5)"),
        (0.9, 0.5, "Fail", "0.9 > max 0.75 (max 1.5 times stable 0.5)"),
        (0.1, 0.0, "Fail", "0.1 > max 0 (max 1.5 times stable 0)"),
        (0.9, None, "Error", "no data for the stable version (no series); onNoData is Error"),
        (0.9, math.nan, "Error", "no data for the stable version (NaN); onNoData is Error"),
    ],
)
def test_a_metric_compared_to_stable_is_judged_against_the_stable_versions_value(
    canary: float, stable: float | None, verdict: str, message: str
) -> None:
    answers = {'p95{service="chat-api-green"}': canary, 'p95{service="chat-api-blue"}': stable}
    (got,) = measure(Answers(answers), RELATIVE, CONTEXT, NOW, STABLE)
    assert (got.verdict, got.message) == (verdict, message)
    assert got.value == str(canary)
    assert got.stable_value == (None if stable is None else ("NaN" if math.isnan(stable)
                                                             else f"{stable:g}"))


def test_the_stable_versions_query_failing_is_an_error_and_the_canarys_comes_first() -> None:
    (got,) = measure(Answers({'p95{service="chat-api-green"}': 0.7}), RELATIVE, CONTEXT, NOW,
                     STABLE)
    assert got.verdict == "Error" and got.message.startswith("the stable version's query: ")
    (first,) = measure(Answers({'p95{service="chat-api-blue"}': 0.5}), RELATIVE, CONTEXT, NOW,
                       STABLE)
    assert first.verdict == "Error" and "stable" not in first.message
    # with nothing beside the version measured (an in-place release): no data
    (alone,) = measure(Answers({'p95{service="chat-api-green"}': 0.7}), RELATIVE, CONTEXT, NOW)
    assert alone.verdict == "Error" and "no data for the stable version" in alone.message
