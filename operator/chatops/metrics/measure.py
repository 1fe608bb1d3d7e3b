"""One round of measurements of one component's version: the only place the analysis
touches a `MetricProvider`, so everything it decides stays in pure `analysis` functions.

The minimum-traffic query runs once per component and round; every metric is still
queried when traffic is too low, so `status.analysis` shows the value a human would want
to see next to the "too little traffic" verdict.
"""

from __future__ import annotations

import datetime

from chatops.api.analysis import Analysis, Measurement
from chatops.api.common import now_rfc3339
from chatops.errors import MetricsUnavailable
from chatops.metrics.analysis import QueryContext, TrafficSeen, format_value, judge, render
from chatops.metrics.provider import MetricProvider


def measure(
    provider: MetricProvider,
    analysis: Analysis,
    context: QueryContext,
    now: datetime.datetime,
) -> list[Measurement]:
    """A measurement of every metric of `analysis` for the version `context` names.
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
        verdict, message = judge(metric, traffic_error or value, traffic)
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
            )
        )
    return measurements
