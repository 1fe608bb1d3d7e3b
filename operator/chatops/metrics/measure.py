"""One round of measurements of one component's version: the only place the analysis
touches a `MetricProvider` or a `WebProvider`, so everything it decides stays in pure
`analysis` functions.

The minimum-traffic query runs once per component and round; every metric is still
queried when traffic is too low, so `status.analysis` shows the value a human would want
to see next to the "too little traffic" verdict.
"""

from __future__ import annotations

import datetime

from chatops.api.analysis import Analysis, Measurement, Metric
from chatops.api.common import now_rfc3339
from chatops.errors import MetricsUnavailable
from chatops.metrics.analysis import QueryContext, TrafficSeen, format_value, judge, render
from chatops.metrics.provider import MetricProvider
from chatops.metrics.web import WebProvider
from chatops.metrics.web import request_for as web_request


def measure(
    provider: MetricProvider,
    analysis: Analysis,
    context: QueryContext,
    now: datetime.datetime,
    stable: QueryContext | None = None,
    web: WebProvider | None = None,
) -> list[Measurement]:
    """A measurement of every metric of `analysis` for the version `context` names, the
    `compareToStable` ones against the same query for `stable` (the other color's pods).
    Prometheus queries go to `provider`, `web` metrics to `web`. Failures to answer
    become Error measurements; an unknown placeholder is a spec error and raises
    `UnknownPlaceholder`."""
    web = web or WebProvider()
    traffic: TrafficSeen | None = None
    traffic_error: MetricsUnavailable | None = None
    guard = analysis.minimum_traffic
    if guard is not None:
        query = render(guard.query, context, "spec.analysis.minimumTraffic.query")
        try:
            traffic = TrafficSeen(provider.query(query), guard.min)
        except MetricsUnavailable as err:
            traffic_error = MetricsUnavailable(err.address, f"minimum-traffic query: {err.problem}")

    measurements = []
    for index, metric in enumerate(analysis.metrics):
        asked, value = _ask(provider, web, metric, index, context)
        baseline: float | MetricsUnavailable | None = None
        if metric.compare_to_stable and stable is not None:
            baseline = _ask(provider, web, metric, index, stable)[1]
        verdict, message = judge(metric, traffic_error or value, traffic, baseline)
        measurements.append(
            Measurement(
                metric=metric.name,
                component=context.component,
                query=asked,
                value=None if isinstance(value, MetricsUnavailable) else format_value(value),
                verdict=verdict,
                time=now_rfc3339(now),
                message=message,
                dry_run=metric.dry_run,
                stable_value=None if isinstance(baseline, MetricsUnavailable)
                else format_value(baseline),
            )
        )
    return measurements


def _ask(
    provider: MetricProvider,
    web: WebProvider,
    metric: Metric,
    index: int,
    context: QueryContext,
) -> tuple[str, float | MetricsUnavailable | None]:
    """What metric `index` asks for the version `context` names (the rendered query, or
    the web request's method and URL) and the answer: a value, None for no data, or why
    there is none."""
    if metric.web is not None:
        request = web_request(metric, context, index)
        try:
            return request.endpoint, web.value(request)
        except MetricsUnavailable as err:
            return request.endpoint, err
    assert metric.query is not None  # exactly one of query and web
    query = render(metric.query, context, f"spec.analysis.metrics[{index}].query")
    try:
        return query, provider.query(query)
    except MetricsUnavailable as err:
        return query, err
