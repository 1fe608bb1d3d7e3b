"""The analysis against the real Prometheus, scraping the test exporter that plays the
chat app's versions: the values a release is judged on, and what happens when
Prometheus is gone."""

from __future__ import annotations

import datetime
import json
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from chatops import clock
from chatops.api.analysis import DEFAULT_METRICS, Analysis
from chatops.errors import MetricsUnavailable
from chatops.metrics.analysis import QueryContext, count, outcome, render
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider
from support import PrivatePrometheus, wait_for

pytestmark = pytest.mark.e2e

ERROR_RATE = next(m for m in DEFAULT_METRICS if m.name == "error-rate")


def play(exporter: str, namespace: str, service: str, **behaviour: float) -> None:
    """Make the exporter serve `service` in `namespace` with this behaviour."""
    request = urllib.request.Request(
        f"{exporter}/targets/{namespace}/{service}",
        method="PUT",
        data=json.dumps(behaviour).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


def context(namespace: str, service: str) -> QueryContext:
    return QueryContext(service, namespace, "api", service.rsplit("-", 1)[-1], "r1")


@pytest.fixture
def tenant(environment: dict[str, str]) -> Iterator[str]:
    """A namespace label of its own in the exporter's series (no cluster needed)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    yield name
    for service in ("chat-api-blue", "chat-api-green", "chat-api-idle"):
        request = urllib.request.Request(
            f"{environment['EXPORTER_URL']}/targets/{name}/{service}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
def prometheus(environment: dict[str, str]) -> PrometheusProvider:
    return PrometheusProvider(environment["PROMETHEUS_URL"], token="tok-e2e-secret")


def test_the_provider_returns_the_error_rate_the_exporter_plays(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    play(environment["EXPORTER_URL"], tenant, "chat-api-green", rps=100, errorRate=0.05)
    play(environment["EXPORTER_URL"], tenant, "chat-api-blue", rps=100, errorRate=0.0)
    query = render(ERROR_RATE.query, context(tenant, "chat-api-green"))

    def settled() -> float | None:
        value = prometheus.query(query)
        return value if value is not None and abs(value - 0.05) < 0.002 else None

    assert wait_for(settled, timeout=60, what="the green error rate in Prometheus") == (
        pytest.approx(0.05, abs=0.002)
    )
    blue = prometheus.query(render(ERROR_RATE.query, context(tenant, "chat-api-blue")))
    assert blue == 0.0
    # No series for a version nobody plays: None, which the analysis calls no data.
    absent = render(ERROR_RATE.query, context(tenant, "chat-api-nobody"))
    assert prometheus.query(absent) is None


def test_a_round_of_measurements_judges_the_bad_canary_and_passes_the_good_one(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    exporter = environment["EXPORTER_URL"]
    play(exporter, tenant, "chat-api-green", rps=100, errorRate=0.05, latency=0.05, wsSuccess=1)
    play(exporter, tenant, "chat-api-blue", rps=100, errorRate=0.0, latency=0.05, wsSuccess=1)
    play(exporter, tenant, "chat-api-idle", rps=0, wsRate=0)
    analysis = Analysis.model_validate({"minimumTraffic": {"min": 10}})
    now = datetime.datetime.now(datetime.UTC)

    def verdicts(service: str) -> dict[str, tuple[str, str | None]] | None:
        got = measure(prometheus, analysis, context(tenant, service), now)
        table = {m.metric: (m.verdict, m.value) for m in got}
        return table if all(v != "Inconclusive" for v, _ in table.values()) else None

    green = wait_for(lambda: verdicts("chat-api-green"), timeout=90, what="green judged")
    assert green["error-rate"] == ("Fail", "0.05")
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
    assert all(m.message.startswith("too little traffic: 0 < 10") for m in idle)
    no_guard = measure(prometheus, Analysis(), context(tenant, "chat-api-idle"), now)
    error_rate = next(m for m in no_guard if m.metric == "error-rate")
    assert (error_rate.value, error_rate.verdict) == ("NaN", "Inconclusive")


def test_queries_that_are_not_one_number_are_errors_that_say_why(
    environment: dict[str, str], tenant: str, prometheus: PrometheusProvider
) -> None:
    play(environment["EXPORTER_URL"], tenant, "chat-api-blue", rps=10)
    play(environment["EXPORTER_URL"], tenant, "chat-api-green", rps=10)
    by_service = f'sum by (service) (http_requests_total{{namespace="{tenant}"}})'
    wait_for(lambda: _error_of(prometheus, by_service), timeout=60, what="two series in Prometheus")
    assert "returned 2 series; it must return one number" in _error_of(prometheus, by_service)

    bad = _error_of(prometheus, "sum(rate(http_requests_total[1m]")
    assert bad.startswith("Prometheus at http://127.0.0.1:")
    assert "answered HTTP 400" in bad and "parse error" in bad
    assert "tok-e2e-secret" not in bad


def _error_of(provider: PrometheusProvider, query: str) -> str:
    try:
        provider.query(query)
    except MetricsUnavailable as err:
        return str(err)
    return ""


def test_prometheus_stopped_is_an_error_that_holds_the_release(
    environment: dict[str, str], tenant: str, own_prometheus: PrivatePrometheus
) -> None:
    # A Prometheus of this test's own: the shared one must keep serving the others.
    prometheus = PrometheusProvider(own_prometheus.url, token="tok-e2e-secret")
    play(environment["EXPORTER_URL"], tenant, "chat-api-green", rps=100)
    analysis = Analysis()
    query = render(ERROR_RATE.query, context(tenant, "chat-api-green"))
    wait_for(lambda: prometheus.query(query) is not None, timeout=60, what="a value before stop")
    now = datetime.datetime.now(datetime.UTC)
    passed = measure(prometheus, analysis, context(tenant, "chat-api-green"), now)
    assert {m.verdict for m in passed} == {"Pass"}

    own_prometheus.stop()
    try:
        with pytest.raises(MetricsUnavailable) as raised:
            prometheus.query(query)
        assert "unreachable" in str(raised.value)
        assert "tok-e2e-secret" not in str(raised.value)
        later = now + datetime.timedelta(seconds=1)  # the next round
        errored = measure(prometheus, analysis, context(tenant, "chat-api-green"), later)
    finally:
        own_prometheus.start()  # same address, same data
    assert {m.verdict for m in errored} == {"Error"}
    # One error after a pass holds the release: not promoted, not rolled back.
    started = clock.rfc3339(now)
    after_both = count(count(None, started, passed), started, errored)
    assert outcome(analysis, after_both)[0] == "Running"
    assert outcome(analysis, count(None, started, errored))[0] == "Running"

    # Back up, the same provider answers again, with the exporter's value.
    wait_for(lambda: prometheus.query(query) == 0.0, timeout=60, what="answers after restart")
