"""The analysis against the real Prometheus, scraping the chat app's pods as the
simulator serves them under real traffic: the values a release is judged on, and what
happens when Prometheus is gone."""

from __future__ import annotations

import datetime
import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kubernetes import client

import chatapp_client as app
from chatops import clock
from chatops.api.analysis import DEFAULT_METRICS, Analysis, Metric, MinimumTraffic, success_ratio
from chatops.errors import MetricsUnavailable
from chatops.metrics import grouped
from chatops.metrics.analysis import QueryContext, count, judge, outcome, render
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider
from support import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "env"))
import localenv

pytestmark = pytest.mark.e2e

ERROR_RATE = next(m for m in DEFAULT_METRICS if m.name == "error-rate")


RPS = 50


def context(namespace: str, service: str) -> QueryContext:
    return QueryContext(service, namespace, "api", service.rsplit("-", 1)[-1], app.REVISION)


def within_noise(value: float, share: float, requests: float) -> bool:
    """`value` is the share `share` of `requests` random outcomes, within 4 sigma."""
    return abs(value - share) <= 4 * (share * (1 - share) / max(requests, 1)) ** 0.5


@pytest.fixture(scope="module")
def tenant(environment: dict[str, str], api: client.ApiClient) -> Iterator[str]:
    """A namespace with three versions of the api, served by the simulator: green
    (chat-api:2.0) fails 5 % and takes 50 ms, blue (chat-api:1.0) is fine, both under
    RPS requests a second; idle gets no traffic at all."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        app.behave(name, "chat-api:2.0", errorRate=0.05, latency=0.05)
        for image, color in (("chat-api:2.0", "green"), ("chat-api:1.0", "blue")):
            app.traffic(name, app.deploy(api, name, image, color), rps=RPS)
        app.deploy(api, name, "chat-api:1.1", "idle")
        yield name
    finally:
        app.chatapp("DELETE", f"/traffic/{name}")
        core.delete_namespace(name, propagation_policy="Background")


def requests_in(prometheus: PrometheusProvider, namespace: str, service: str) -> float:
    """Requests the window of the default queries (1 m) holds for the service."""
    found = prometheus.query(
        f'sum(increase(http_requests_total{{namespace="{namespace}",service="{service}"}}[1m]))'
    )
    return found or 0.0


@pytest.fixture
def prometheus(environment: dict[str, str]) -> PrometheusProvider:
    return PrometheusProvider(environment["PROMETHEUS_URL"], token="tok-e2e-secret")


def test_the_provider_returns_the_error_rate_the_version_has(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    query = render(ERROR_RATE.query, context(tenant, "chat-api-green"))

    def enough() -> tuple[float, float] | None:
        """The error rate once the window holds 10 s of traffic, and the requests in it."""
        n = requests_in(prometheus, tenant, "chat-api-green")
        value = prometheus.query(query) if n >= 10 * RPS else None
        return (value, requests_in(prometheus, tenant, "chat-api-green")) if value else None

    value, n = wait_for(enough, timeout=90, what="the green error rate in Prometheus")
    assert within_noise(value, 0.05, n), (value, n)
    blue = prometheus.query(render(ERROR_RATE.query, context(tenant, "chat-api-blue")))
    assert blue == 0.0
    # No series for a Service nobody runs: None, which the analysis calls no data.
    absent = render(ERROR_RATE.query, context(tenant, "chat-api-nobody"))
    assert prometheus.query(absent) is None


def test_a_round_of_measurements_judges_the_bad_canary_and_passes_the_good_one(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    # Judged once the window holds 10 s of traffic: 5 % of a handful of requests can be
    # none (a CI run saw the bad canary pass on 0 of its first few dozen).
    least = 10 * RPS
    analysis = Analysis.model_validate({"minimumTraffic": {"min": least}})
    now = datetime.datetime.now(datetime.UTC)

    def verdicts(service: str) -> dict[str, tuple[str, str | None]] | None:
        got = measure(prometheus, analysis, context(tenant, service), now)
        table = {m.metric: (m.verdict, m.value) for m in got}
        return table if all(v != "Inconclusive" for v, _ in table.values()) else None

    green = wait_for(lambda: verdicts("chat-api-green"), timeout=90, what="green judged")
    verdict, value = green["error-rate"]
    n = requests_in(prometheus, tenant, "chat-api-green")
    assert verdict == "Fail" and value is not None and within_noise(float(value), 0.05, n)
    assert green["latency-p95"][0] == "Pass" and green["websocket-success"] == ("Pass", "1")
    blue = wait_for(lambda: verdicts("chat-api-blue"), timeout=90, what="blue judged")
    assert {metric: verdict for metric, (verdict, _) in blue.items()} == {
        "error-rate": "Pass",
        "latency-p95": "Pass",
        "websocket-success": "Pass",
    }
    # A version with no requests: too little traffic, and 0/0 is NaN, never a pass.
    idle = measure(prometheus, analysis, context(tenant, "chat-api-idle"), now)
    assert {m.verdict for m in idle} == {"Inconclusive"}
    assert all(m.message.startswith(f"too little traffic: 0 < {least}") for m in idle)
    no_guard = measure(prometheus, Analysis(), context(tenant, "chat-api-idle"), now)
    error_rate = next(m for m in no_guard if m.metric == "error-rate")
    assert (error_rate.value, error_rate.verdict) == ("NaN", "Error")  # onNoData: Error


def test_queries_that_are_not_one_number_are_errors_that_say_why(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    by_service = f'sum by (service) (http_requests_total{{namespace="{tenant}"}})'
    # the three Services' series (idle's counters start at 0 once its pods are scraped)
    error = wait_for(lambda: "returned 3 series" in (e := _error_of(prometheus, by_service))
                     and e, timeout=60, what="the three Services' series in Prometheus")
    assert "returned 3 series; it must return one number" in error

    bad = _error_of(prometheus, "sum(rate(http_requests_total[1m]")
    assert bad.startswith("Prometheus at http://127.0.0.1:")
    assert "answered HTTP 400" in bad and "parse error" in bad
    assert "tok-e2e-secret" not in bad


def _ready(environment: dict[str, str]) -> bool:
    try:
        return localenv.http_ok(f"{environment['PROMETHEUS_URL']}/-/ready")
    except OSError:
        return False


def _error_of(provider: PrometheusProvider, query: str) -> str:
    try:
        provider.query(query)
    except MetricsUnavailable as err:
        return str(err)
    return ""


def test_websocket_success_is_one_without_attempts_zero_when_all_fail_and_no_data_unrun(
    environment: dict[str, str], api: client.ApiClient, namespace: str,
    prometheus: PrometheusProvider,
) -> None:
    """The default websocket-success, on a 5 s window so the test waits seconds: a
    version whose clients all stay connected (no attempt in the window: a blue-green
    release's new color while long-lived WebSockets stay on the old) passes; one whose
    every handshake fails fails (its success series does not exist); one nobody runs is
    no data (an error by default: held, never a pass)."""
    sel = 'namespace="{{namespace}}",service="{{service}}"'
    metric = Metric(name="websocket-success", min=0.99, query=success_ratio(
        f'websocket_connections_total{{{sel},result="success"}}',
        f"websocket_connections_total{{{sel}}}", "5s",
    ))
    app.behave(namespace, "chat-api:3.0", wsSuccess=0.0)
    quiet = app.deploy(api, namespace, "chat-api:1.0", "quiet", replicas=1)
    failing = app.deploy(api, namespace, "chat-api:3.0", "failing", replicas=1)
    for service in (quiet, failing):
        app.chatapp("PUT", f"/traffic/{namespace}/{service}", {"rps": 5, "wsRate": 4})

    def value(service: str) -> float | None:
        return prometheus.query(render(metric.query, context(namespace, service)))

    def attempts(service: str) -> float | None:
        return prometheus.query(
            f'sum(rate(websocket_connections_total{{namespace="{namespace}",'
            f'service="{service}"}}[5s]))'
        )

    wait_for(lambda: (attempts(quiet) or 0) > 0 and value(quiet) == 1.0, timeout=60,
             what="the quiet version's handshakes succeeding")
    assert wait_for(lambda: value(failing) == 0.0 and (attempts(failing) or 0) > 0,
                    timeout=60, what="the failing version's handshakes failing")
    assert judge(metric, value(failing))[0] == "Fail"
    app.chatapp("PUT", f"/traffic/{namespace}/{quiet}", {"rps": 5, "wsRate": 0})
    wait_for(lambda: attempts(quiet) == 0.0, timeout=60,
             what="a window without a handshake on the quiet version")
    assert value(quiet) == 1.0
    assert judge(metric, value(quiet)) == ("Pass", "1 within min 0.99")
    nobody = value("chat-api-nobody")
    assert nobody is None and judge(metric, nobody)[0] == "Error"  # no data (onNoData)


@pytest.mark.serial  # stops the Prometheus every test shares
def test_prometheus_stopped_is_an_error_that_holds_the_release(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    analysis = Analysis()
    query = render(ERROR_RATE.query, context(tenant, "chat-api-blue"))
    wait_for(lambda: prometheus.query(query) is not None, timeout=60, what="a value before stop")
    now = datetime.datetime.now(datetime.UTC)
    passed = measure(prometheus, analysis, context(tenant, "chat-api-blue"), now)
    assert {m.verdict for m in passed} == {"Pass"}

    localenv.stop("prometheus")
    try:
        with pytest.raises(MetricsUnavailable) as raised:
            prometheus.query(query)
        assert "unreachable" in str(raised.value)
        assert "tok-e2e-secret" not in str(raised.value)
        later = now + datetime.timedelta(seconds=1)  # the next round
        errored = measure(prometheus, analysis, context(tenant, "chat-api-blue"), later)
    finally:
        localenv.restart("prometheus")
        wait_for(lambda: _ready(environment), timeout=120, what="Prometheus ready again")
    assert {m.verdict for m in errored} == {"Error"}
    # One error after a pass holds the release: not promoted, not rolled back.
    started = clock.rfc3339(now)
    after_both = count(count(None, started, passed), started, errored)
    assert outcome(analysis, after_both)[0] == "Running"
    assert outcome(analysis, count(None, started, errored))[0] == "Running"

    # Back up, the same provider answers again, with blue's value.
    wait_for(lambda: prometheus.query(query) == 0.0, timeout=60, what="answers after restart")


# -- the sweep's grouped queries (metrics/grouped.py) ---------------------------------------

_SEL = 'namespace="{{namespace}}",service="{{service}}",revision="{{revision}}"'
_selectors = st.builds(
    lambda metric, extra: f"{metric}{{{_SEL}{extra}}}",
    st.sampled_from(["http_requests_total", "websocket_connections_total"]),
    st.sampled_from(["", ',code=~"5.."', ',code!~"5.."', ',result="success"']),
)
_ranged = st.builds(
    lambda fn, selector, window: f"{fn}({selector}[{window}])",
    st.sampled_from(["rate", "increase", "irate"]), _selectors, st.sampled_from(["30s", "1m"]),
)
_leaves = st.one_of(
    st.builds(
        lambda op, grouping, inner: f"{op}{grouping} ({inner})",
        st.sampled_from(["sum", "avg", "max", "min", "count"]),
        st.sampled_from(["", " by (pod)", " without (pod)", " by (code)"]),
        _ranged,
    ),
    st.just(f"histogram_quantile(0.9, sum by (le) "
            f"(rate(http_request_duration_seconds_bucket{{{_SEL}}}[1m])))"),
    _ranged,
)
TEMPLATES = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner,
                  st.sampled_from(["/", "+", "-", "*", "or", "and", "unless"]), inner),
        st.builds(lambda a, op, n: f"({a}) {op} {n}", inner,
                  st.sampled_from([">", "<", "== bool", "> bool", "*"]),
                  st.sampled_from(["0", "0.5", "1"])),
        st.builds(lambda a: f"clamp_min({a}, 0.01)", inner),
    ),
    max_leaves=4,
)
"""PromQL templates shaped as users write them: aggregations with and without `by`,
range functions, arithmetic, set and comparison operators, `histogram_quantile`."""


def _same(own: float | None, grouped: float | None) -> bool:
    if own is None or grouped is None:
        return own is grouped
    return (math.isnan(own) and math.isnan(grouped)) or math.isclose(
        own, grouped, rel_tol=1e-9, abs_tol=1e-12)


def _grouped_answers_each_as_its_own(
    prometheus: PrometheusProvider, template: str, contexts: list[QueryContext],
    at: datetime.datetime,
) -> None:
    grouping = grouped.grouping(template)
    assert grouping is not None
    promql = grouped.query(grouping, contexts)
    assert promql is not None
    answers = grouped.answers(grouping, contexts, prometheus.series(promql, at))
    for c in contexts:
        own = render(template, c)
        try:
            value = prometheus.query_at(own, at)
        except MetricsUnavailable as err:  # several series: no answer from the sweep either
            assert "series" in err.problem and own not in answers, (own, err, answers.get(own))
            continue
        assert own in answers and _same(value, answers[own]), (own, value, answers.get(own))


@pytest.fixture(scope="module")
def versions(
    environment: dict[str, str], tenant: str
) -> tuple[list[QueryContext], datetime.datetime]:
    """The tenant's three versions, one nobody runs and one of another namespace, and
    an instant Prometheus has scraped everything before (queries at it agree)."""
    provider = PrometheusProvider(environment["PROMETHEUS_URL"])
    wait_for(lambda: requests_in(provider, tenant, "chat-api-green") >= 10 * RPS,
             timeout=90, what="10 s of the green version's traffic in Prometheus")
    contexts = [context(tenant, s) for s in
                ("chat-api-green", "chat-api-blue", "chat-api-idle", "chat-api-nobody")]
    contexts.append(context("e2e-elsewhere", "chat-api-green"))
    return contexts, clock.now() - datetime.timedelta(seconds=3)


def test_one_grouped_query_answers_each_version_as_its_own_query_does(
    versions: tuple[list[QueryContext], datetime.datetime], prometheus: PrometheusProvider
) -> None:
    """The default metrics and the minimum-traffic guard, asked once for five versions
    (one failing 5 %, one fine, one idle, two with no series), give each the value its
    own query gives, evaluated by the real Prometheus at one instant."""
    contexts, at = versions
    for template in [*(m.query for m in DEFAULT_METRICS if m.query),
                     MinimumTraffic().query]:
        _grouped_answers_each_as_its_own(prometheus, template, contexts, at)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(template=TEMPLATES)
def test_templates_that_can_be_grouped_answer_as_their_own_queries(
    versions: tuple[list[QueryContext], datetime.datetime], prometheus: PrometheusProvider,
    template: str,
) -> None:
    """Any template `grouping` accepts answers each version as its own query does; the
    rest (`grouping` None) are asked per release and are not the sweep's."""
    assume(grouped.grouping(template) is not None)
    contexts, at = versions
    _grouped_answers_each_as_its_own(prometheus, template, contexts, at)
