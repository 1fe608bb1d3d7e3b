"""The `web` metric provider's pure half: the number a JSONPath finds in an answer, the
request rendered for a version, and the verdicts of a round (the HTTP half is proven
against a real server in tests/e2e/test_web_metric_e2e.py)."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from chatops.api import validation
from chatops.api.analysis import Analysis, Metric
from chatops.api.common import SecretKeyRef
from chatops.errors import ChatopsError, UnknownPlaceholder, WebMetricUnavailable
from chatops.metrics import jsonpath
from chatops.metrics.analysis import QueryContext, judge, placeholder_problems
from chatops.metrics.measure import measure
from chatops.metrics.web import WebProvider, WebRequest, request_for

ANSWER = {
    "status": "success",
    "data": {
        "errorRate": 0.004,
        "p95": "0.21",
        "ok": True,
        "degraded": False,
        "missing": None,
        "nan": "NaN",
        "series": [{"name": "api", "value": 3}, {"name": "web", "value": 5}],
        "text": "n/a",
    },
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("{$.data.errorRate}", 0.004),  # Argo Rollouts' and kubectl's way of writing it
        ("$.data.errorRate", 0.004),
        ("{.data.errorRate}", 0.004),  # kubectl's, without the $
        ("$.data.p95", 0.21),  # a string holding a number, as Prometheus writes values
        ("$.data.ok", 1.0),  # true is 1: `min: 1` asks for true
        ("$.data.degraded", 0.0),
        ("$.data.series[1].value", 5.0),
        ("$.data.series[?(@.name == 'api')].value", 3.0),  # a filter
        ("$.data.missing", None),  # null: no data
        ("$.data.absent", None),  # matches nothing: no data
        ("$.nothing.here[0]", None),
    ],
)
def test_a_jsonpath_finds_one_number_or_no_data(path: str, value: float | None) -> None:
    assert jsonpath.number(ANSWER, path) == value


def test_nan_is_a_value_the_judge_calls_no_data() -> None:
    value = jsonpath.number(ANSWER, "$.data.nan")
    assert value is not None and math.isnan(value)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("$.data.series[*].value", "matched 2 values; it must match one"),
        ("$.data.text", "matched the string 'n/a', not a number"),
        ("$.data", "matched an object, not a number"),
        ("$.data.series", "matched an array of 2, not a number"),
    ],
)
def test_a_jsonpath_matching_anything_but_one_number_says_what(path: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{problem}$"):
        jsonpath.number(ANSWER, path)


def _spec(**web: Any) -> dict[str, Any]:
    return {"metrics": [{"name": "slo", "max": 0.01,
                         "web": {"url": "http://slo/api", "jsonPath": "$.v", **web}}]}


def _problems(analysis: dict[str, Any]) -> list[str]:
    spec = {"components": [{"name": "api", "template": {}, "service": {"port": 80}}],
            "strategy": {"canary": {}}, "analysis": analysis}
    return validation.problems("ChatRelease", spec)


@pytest.mark.parametrize(
    ("web", "problem"),
    [
        ({"jsonPath": "$.data["}, "spec.analysis.metrics[0].web.jsonPath: not a JSONPath"),
        ({"jsonPath": "data.value"}, "spec.analysis.metrics[0].web.jsonPath: String should match"),
        ({"body": "{}"}, "spec.analysis.metrics[0].web: body needs method POST"),
        ({"method": "PUT"}, "spec.analysis.metrics[0].web.method: Input should be 'GET' or"),
        ({"timeoutSeconds": 61}, "spec.analysis.metrics[0].web.timeoutSeconds: Input should be"),
        ({"headers": [{"name": "X-Key"}]},
         "spec.analysis.metrics[0].web.headers[0]: set exactly one of value and valueFrom"),
        ({"headers": [{"name": "X-Key", "value": "a\nb"}]},
         "spec.analysis.metrics[0].web.headers[0].value: String should match"),
        ({"headers": [{"name": "Accept", "value": "a"}, {"name": "accept", "value": "b"}]},
         "spec.analysis.metrics[0].web: each header name may appear once"),
        ({"url": "http://slo/{{pod}}"},
         "spec.analysis.metrics[0].web.url: unknown placeholder {{pod}}"),
        ({"method": "POST", "body": '{"pod": "{{pod}}"}'},
         "spec.analysis.metrics[0].web.body: unknown placeholder {{pod}}"),
    ],
)
def test_a_bad_web_metric_is_refused_naming_its_field(web: dict[str, Any], problem: str) -> None:
    found = _problems(_spec(**web))
    assert any(p.startswith(problem) for p in found), found


def test_a_metric_is_a_query_or_a_web_endpoint_never_both_nor_neither() -> None:
    both = _spec()
    both["metrics"][0]["query"] = "up"
    neither: dict[str, Any] = {"metrics": [{"name": "slo", "max": 1}]}
    for analysis in (both, neither):
        assert "spec.analysis.metrics[0]: set exactly one of query and web" in _problems(analysis)


CONTEXT = QueryContext("chat-api-green", "prod", "api", "green", "7f3a")
STABLE = QueryContext("chat-api-blue", "prod", "api", "blue", "5d8c")
NOW = datetime.datetime(2026, 3, 1, 12, 0, 30, tzinfo=datetime.UTC)
WEB = Metric.model_validate({
    "name": "slo-errors",
    "max": 0.01,
    "web": {
        "url": "http://user:pw@slo.monitoring/api/{{namespace}}/{{service}}?color={{color}}",
        "method": "POST",
        "body": '{"component": "{{component}}", "revision": "{{revision}}"}',
        "jsonPath": "{$.data.errorRate}",
        "timeoutSeconds": 3,
    },
})


def test_the_url_and_body_are_rendered_as_a_query_is_and_shown_without_user_info() -> None:
    request = request_for(WEB, CONTEXT, 0)
    assert request.url == "http://user:pw@slo.monitoring/api/prod/chat-api-green?color=green"
    assert request.body == '{"component": "api", "revision": "7f3a"}'
    assert (request.method, request.timeout) == ("POST", 3)
    assert request.endpoint == "POST http://***@slo.monitoring/api/prod/chat-api-green?color=green"
    assert placeholder_problems(Analysis(metrics=[WEB])) == []


def test_an_unknown_placeholder_in_a_url_names_the_field() -> None:
    metric = WEB.model_copy(update={"web": WEB.web.model_copy(update={"url": "http://x/{{pod}}"})})
    with pytest.raises(UnknownPlaceholder, match=r"spec\.analysis\.metrics\[2\]\.web\.url"):
        request_for(metric, CONTEXT, 2)


class Endpoint(WebProvider):
    """A web provider answering from a table by URL; a URL it lacks does not answer."""

    def __init__(self, answers: dict[str, float | None]) -> None:
        super().__init__()
        self.answers = answers

    def value(self, request: WebRequest) -> float | None:
        if request.url not in self.answers:
            raise WebMetricUnavailable(request.metric, request.endpoint, "HTTP 500")
        return self.answers[request.url]


class NoPrometheus:
    def query(self, promql: str) -> float | None:
        raise AssertionError(f"a web metric asked Prometheus {promql!r}")


GREEN = "http://user:pw@slo.monitoring/api/prod/chat-api-green?color=green"
BLUE = "http://user:pw@slo.monitoring/api/prod/chat-api-blue?color=blue"


@pytest.mark.parametrize(
    ("answers", "on_no_data", "verdict", "message"),
    [
        ({GREEN: 0.004}, "Error", "Pass", "0.004 within max 0.01"),
        ({GREEN: 0.02}, "Error", "Fail", "0.02 > max 0.01"),
        ({GREEN: None}, "Inconclusive", "Inconclusive", "no data (no series); onNoData is "
         "Inconclusive"),
        ({GREEN: math.nan}, "Fail", "Fail", "no data (NaN); onNoData is Fail"),
        ({}, "Pass", "Error", "web metric slo-errors: POST http://***@slo.monitoring/api/prod/"
         "chat-api-green?color=green: HTTP 500"),
    ],
)
def test_a_web_metric_is_judged_by_the_same_rules_as_a_query(
    answers: dict[str, float | None], on_no_data: str, verdict: str, message: str
) -> None:
    analysis = Analysis(metrics=[WEB.model_copy(update={"on_no_data": on_no_data})])
    (got,) = measure(NoPrometheus(), analysis, CONTEXT, NOW, web=Endpoint(answers))
    assert (got.verdict, got.message) == (verdict, message)
    assert got.query == "POST http://***@slo.monitoring/api/prod/chat-api-green?color=green"


@pytest.mark.parametrize(
    ("answers", "verdict", "message"),
    [
        ({GREEN: 0.012, BLUE: 0.01}, "Pass", "0.012 within max 0.015 (max 1.5 times stable 0.01)"),
        ({GREEN: 0.02, BLUE: 0.01}, "Fail", "0.02 > max 0.015 (max 1.5 times stable 0.01)"),
        ({GREEN: 0.02, BLUE: None}, "Error", "no data for the stable version (no series); "
         "onNoData is Error"),
        ({GREEN: 0.02}, "Error", "the stable version's query: web metric slo-errors: POST "
         "http://***@slo.monitoring/api/prod/chat-api-blue?color=blue: HTTP 500"),
    ],
)
def test_a_web_metric_compared_to_stable_asks_the_stable_versions_url(
    answers: dict[str, float | None], verdict: str, message: str
) -> None:
    metric = WEB.model_copy(update={"max": 1.5, "compare_to_stable": True})
    (got,) = measure(NoPrometheus(), Analysis(metrics=[metric]), CONTEXT, NOW, STABLE,
                     web=Endpoint(answers))
    assert (got.verdict, got.message) == (verdict, message)


def test_an_error_is_an_error_whatever_on_no_data_says() -> None:
    err = WebMetricUnavailable("slo", "GET http://slo/x", "no answer within 3 s")
    metric = WEB.model_copy(update={"on_no_data": "Pass"})
    assert judge(metric, err) == ("Error", "web metric slo: GET http://slo/x: no answer within 3 s")


SECRET = "tok-9f8e7d6c5b4a"


def _with_header(header: dict[str, Any]) -> WebRequest:
    metric = Metric.model_validate({
        "name": "slo", "max": 1,
        "web": {"url": "http://127.0.0.1:9/never", "jsonPath": "$.v", "headers": [header]},
    })
    return request_for(metric, CONTEXT, 0)


def test_a_header_from_a_secret_is_never_in_a_message() -> None:
    """A value that would smuggle a second header in is refused before any request,
    without quoting it."""
    secret = {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "slo", "key": "t"}}}
    provider = WebProvider(lambda ref: f"{SECRET}\nX-Injected: 1")
    with pytest.raises(WebMetricUnavailable) as raised:
        provider.value(_with_header(secret))
    message = str(raised.value)
    assert SECRET not in message and "X-Injected" not in message
    assert message == (
        "web metric slo: GET http://127.0.0.1:9/never: header Authorization from Secret slo, "
        "key t: the value has a line break or NUL, which a header cannot hold"
    )


def test_a_secret_that_cannot_be_read_is_an_error_naming_the_header_and_secret() -> None:
    def read(ref: SecretKeyRef) -> str:
        raise ChatopsError("HTTP 404 Not Found")

    header = {"name": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "slo", "key": "key"}}}
    with pytest.raises(WebMetricUnavailable, match=(
        "cannot read header X-Api-Key from Secret slo, key key: HTTP 404 Not Found"
    )):
        WebProvider(read).value(_with_header(header))
