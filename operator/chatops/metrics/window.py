"""Queries over a window of time: the drain's reconnect check and the count of what a
release cost its users. Like `measure`, the only place these touch a provider; what
the numbers mean is decided by pure functions (`judge`, `release.drain`,
`release.cost`)."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

from chatops.api.analysis import Measurement, Metric
from chatops.api.common import now_rfc3339
from chatops.api.cost import CostQueries
from chatops.errors import MetricsUnavailable
from chatops.metrics.analysis import WindowContext, format_value, judge, render
from chatops.metrics.provider import MetricProvider, WindowProvider

FIGURES = ("requests", "failed_requests", "websockets_moved", "websockets_dropped")
"""The cost figures, as `CostQueries` and `ReleaseCost` name them."""


def reconnect_check(
    provider: MetricProvider,
    metric: Metric,
    contexts: Sequence[WindowContext],
    now: datetime.datetime,
    field: str,
) -> tuple[Measurement, ...]:
    """One measurement of `metric` per component (`contexts`), judged as the analysis'
    measurements are: an unreachable Prometheus is an Error, never a pass."""
    out = []
    for context in contexts:
        assert metric.query is not None  # the drain's check is a query
        query = render(metric.query, context, field)
        value: float | MetricsUnavailable | None
        try:
            value = provider.query(query)
        except MetricsUnavailable as err:
            value = err
        verdict, message = judge(metric, value)
        out.append(
            Measurement(
                metric=metric.name,
                component=context.component,
                query=query,
                value=None if isinstance(value, MetricsUnavailable) else format_value(value),
                verdict=verdict,
                time=now_rfc3339(now),
                message=message,
            )
        )
    return tuple(out)


def count(
    provider: WindowProvider,
    queries: CostQueries,
    contexts: Sequence[tuple[WindowContext, frozenset[str]]],
    at: datetime.datetime,
) -> tuple[dict[str, int | None], str | None]:
    """Each figure summed over the `contexts` that answer it — `(context, figures)` —
    as of `at`, rounded to whole counts; a query matching no series (or NaN: nothing
    happened) adds 0, and a figure no context answers is 0. The first query Prometheus
    cannot answer stops the count: that figure and the ones after it are None, and the
    problem is returned."""
    figures: dict[str, int | None] = dict.fromkeys(FIGURES)
    for figure in FIGURES:
        query = getattr(queries, figure)
        field = f"spec.cost.{_camel(figure)}"
        total = 0.0
        for context, answers in contexts:
            if figure not in answers:
                continue
            try:
                value = provider.query_at(render(query, context, field), at)
            except MetricsUnavailable as err:
                return figures, f"{_camel(figure)}: {err}"
            if value is not None and math.isfinite(value):
                total += max(value, 0.0)
        figures[figure] = round(total)
    return figures, None


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(w.title() for w in rest)
