"""One round of measurements of one component's version: the only place the analysis
touches a `MetricProvider`, so everything it decides stays in pure `analysis` functions.

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


def measure(
    provider: MetricProvider,
    analysis: Analysis,
    context: QueryContext,
    now: datetime.datetime,
    stable: QueryContext | None = None,
) -> list[Measurement]:
    """A measurement of every metric of `analysis` for the version `context` names, the
    `compareToStable` ones against the same query for `stable` (the other color's pods).
    Query failures become Error measurements; an unknown placeholder is a spec error
    and raises `UnknownPlaceholder`."""
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
        query = render(metric.query, context, f"spec.analysis.metrics[{index}].query")
        value: float | MetricsUnavailable | None
        try:
            value = provider.query(query)
        except MetricsUnavailable as err:
            value = err
        baseline: float | MetricsUnavailable | None = None
        if metric.compare_to_stable:
            baseline = _stable_value(provider, metric, index, stable)
        verdict, message = judge(metric, traffic_error or value, traffic, baseline)
        measurements.append(
            Measurement(
                metric=metric.name,
                component=context.component,
                query=query,
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


def _stable_value(
    provider: MetricProvider, metric: Metric, index: int, stable: QueryContext | None
) -> float | MetricsUnavailable | None:
    if stable is None:  # nothing serves beside the version measured
        return None
    query = render(metric.query, stable, f"spec.analysis.metrics[{index}].query")
    try:
        return provider.query(query)
    except MetricsUnavailable as err:
        return err

